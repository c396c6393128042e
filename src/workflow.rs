//! Step Functions: starting a run's execution. The one place the pipeline calls the Step Functions
//! API, so the IAM check and a reader find it here.

use aws_sdk_sfn::error::ProvideErrorMetadata;

use crate::app::RunInput;
use crate::error::ChuteError;

/// A Step Functions client: build it once per container and share it.
#[derive(Clone)]
pub struct Workflow {
    sfn: aws_sdk_sfn::Client,
}

impl Workflow {
    pub fn new(sdk: &aws_config::SdkConfig) -> Workflow {
        Workflow {
            sfn: aws_sdk_sfn::Client::new(sdk),
        }
    }

    /// Starts the run's execution, named by its run id; `Ok(false)` when that execution already
    /// exists (a re-delivered event, a repeated backfill), which counts as done.
    pub async fn start(
        &self,
        state_machine_arn: &str,
        input: &RunInput,
    ) -> Result<bool, ChuteError> {
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(&input.run_id)
            .input(serde_json::to_string(input).expect("serialisable"))
            .send()
            .await;
        match started {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_already_exists()) =>
            {
                Ok(false)
            }
            Err(e) if e.code() == Some("ExecutionAlreadyExists") => Ok(false),
            Err(e) => Err(crate::aws::classify("StartExecution", e)),
        }
    }
}
