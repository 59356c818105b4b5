fn main() {
    afl::fuzz!(|data: &[u8]| herdsman::fuzzing::protocol_frames(data));
}
