fn main() {
    afl::fuzz!(|data: &[u8]| herdsman::fuzzing::log_lines(data));
}
