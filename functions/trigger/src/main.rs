//! The `trigger` Lambda; the handler is `chute::lambda::trigger::handle`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    chute::lambda::serve("trigger", chute::lambda::trigger::handle).await
}
