// The input of the golden expansion test; see after-macros/src/golden.rs.

#[with_after]
async fn create_order(
    State(db): State<Db>,
    Json(order): Json<Order>,
) -> Result<Json<OrderId>, AppError> {
    let id = db.insert(&order).await?;
    after!(name = "receipt", timeout = Duration::from_secs(5), {
        send_receipt(id).await?;
    });
    after!(clone(db) {
        let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
        let session = cookies.get("session-id").map(|c| c.value().to_owned());
        db.audit("order.created", id, agent, session).await?;
        Ok(())
    });
    for item in order.items {
        after! {
            println!("reserve {item}");
        }
    }
    Ok(Json(id))
}
