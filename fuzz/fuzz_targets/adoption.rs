fn main() {
    afl::fuzz!(|data: &[u8]| herdsman::fuzzing::state_file(data));
}
