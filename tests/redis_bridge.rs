//! The bridge from inside one process (feature `redis`): its counters, what it
//! does with bad messages from Redis, a full queue, and Redis away at start.

fn main() {}
