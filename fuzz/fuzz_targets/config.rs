fn main() {
    afl::fuzz!(|data: &[u8]| herdsman::fuzzing::ecosystem_file(data));
}
