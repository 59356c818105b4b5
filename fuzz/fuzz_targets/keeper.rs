fn main() {
    afl::fuzz!(|data: &[u8]| herdsman::fuzzing::keeper_requests(data));
}
