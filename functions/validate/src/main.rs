//! The `validate` Lambda; the handler is `chute::lambda::validate::handle`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    chute::lambda::serve("validate", chute::lambda::validate::handle).await
}
