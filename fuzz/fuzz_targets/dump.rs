fn main() {
    afl::fuzz!(|data: &[u8]| herdsman::fuzzing::dump_file(data));
}
