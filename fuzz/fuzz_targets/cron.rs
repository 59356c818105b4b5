fn main() {
    afl::fuzz!(|data: &[u8]| herdsman::fuzzing::cron_expression(data));
}
