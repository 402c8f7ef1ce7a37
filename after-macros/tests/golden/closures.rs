// The input of the golden expansion test; see after-macros/src/golden.rs.

#[with_after]
async fn welcome(State(mailer): State<Mailer>, Json(user): Json<User>) -> &'static str {
    // A closure that borrows the handler's context.
    let log = |step: &'static str| {
        after! { tracing::info!(step, "welcome"); }
    };
    log("queued");
    // An `async move` block may outlive the handler, so it takes its own context.
    tokio::spawn(async move {
        after! {
            // `?` without a final `Ok(())`: the block gets one, with a boxed error.
            mailer.send_welcome(&user).await?;
            // Inside a task, `after!` registers with that task's context, and a
            // `move` closure there takes its own clone of it.
            let retry = move || after! { tracing::info!("retry later"); };
            retry();
        }
    });
    "ok"
}
