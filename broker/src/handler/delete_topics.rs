//! DeleteTopics: deletes topics; every broker then removes its copy and the group
//! offsets committed for them (`cluster::reconcile`).

use std::sync::Arc;

use strata_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::Reply;
use super::admin::{check_topics, each_topic, result};
use crate::broker::Broker;
use crate::cluster::metadata::Command;
use crate::topics::checks::existing;

pub async fn handle(broker: Arc<Broker>, request: DeleteTopicsRequest) -> Reply {
    if let Err(refusal) = check_topics(&broker, request.names.iter().map(String::as_str)) {
        return refusal;
    }
    let topics = each_topic(request.names, |name| {
        let broker = broker.clone();
        async move {
            let outcome = match existing(&broker.cluster.image(), &name) {
                Ok(record) => {
                    let command = Command::DeleteTopic {
                        name: name.clone(),
                        id: Some(record.id),
                    };
                    broker.cluster.change(&command).await.map(drop)
                }
                Err(error) => Err(error),
            };
            result(name, outcome)
        }
    })
    .await;
    DeleteTopicsResponse { topics }.into()
}
