//! The `report` Lambda; the handler is `chute::lambda::report::handle`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    chute::lambda::serve("report", chute::lambda::report::handle).await
}
