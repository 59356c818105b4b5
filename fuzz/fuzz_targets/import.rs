fn main() {
    afl::fuzz!(|data: &[u8]| herdsman::fuzzing::pm2_file(data));
}
