//! Tells Cargo that the version a build may be given (`HERDSMAN_BUILD_VERSION`, read with `option_env!` in
//! `src/lib.rs`) is an input of the build: changing it rebuilds herdsman.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HERDSMAN_BUILD_VERSION");
}
