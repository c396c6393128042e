//! The `import` Lambda; the handler is `chute::lambda::import::handle`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    chute::lambda::serve("import", chute::lambda::import::handle).await
}
