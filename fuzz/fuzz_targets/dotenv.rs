fn main() {
    afl::fuzz!(|data: &[u8]| herdsman::fuzzing::dotenv_file(data));
}
