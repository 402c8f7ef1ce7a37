use after_runtime::with_after;

#[with_after]
struct Handler;

fn main() {}
