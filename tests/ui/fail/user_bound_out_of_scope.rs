use after_runtime::{after, with_after};

// The handler binds `headers` in a pattern, so blocks do not get the request's
// `headers`; out of that binding's scope the name is unknown, not the request's.
#[with_after]
async fn handler() -> &'static str {
    if let Some(headers) = Some(5u32) {
        println!("{headers}");
    }
    after! { println!("{}", headers.len()); }
    "ok"
}

fn main() {}
