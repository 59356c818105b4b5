fn main() {
    afl::fuzz!(|data: &[u8]| herdsman::fuzzing::job_journal(data));
}
