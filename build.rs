//! Tells Cargo that the version a build may be given (`HERDSMAN_BUILD_VERSION`, read with `option_env!` in
//! `src/lib.rs`) is an input of the build: changing it rebuilds herdsman. And links the binary with its
//! relative relocations packed.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HERDSMAN_BUILD_VERSION");
    // Relative relocations packed (DT_RELR, glibc 2.36 and binutils 2.38 on): the relocation table shrinks
    // from about 600 KB to a few KB, which every herdsman process (each CLI command, the keeper, the
    // controller, the log keeper) would otherwise read and map at startup.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
