//! The `transform` Lambda; the handler is `chute::lambda::transform::handle`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    chute::lambda::serve("transform", chute::lambda::transform::handle).await
}
