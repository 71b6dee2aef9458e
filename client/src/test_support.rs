//! Helpers shared by the client's unit tests.

/// Listens on a loopback port, accepts every connection and never answers: a hung
/// broker, against which every request waits for its timeout. Returns its address; the
/// listener lives as long as the test's runtime.
pub(crate) async fn hung_broker() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        // Held, not dropped: a closed socket would answer with an end of stream.
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    address
}

/// Listens on a loopback port and answers every request with `answer(request)` at the
/// request's version, after an ApiVersions handshake with this build's ranges: a broker
/// whose answers a test writes. Returns its address; the listener lives as long as the
/// test's runtime.
pub(crate) async fn scripted_broker(
    answer: impl Fn(&strata_protocol::Request) -> strata_protocol::Response + Send + Sync + 'static,
) -> String {
    use futures_util::{SinkExt, StreamExt};
    use strata_protocol::codec::{FrameCodec, ResponseFrame};
    use strata_protocol::messages::ApiVersionsResponse;
    use strata_protocol::{Request, Response, api, frame};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let answer = std::sync::Arc::clone(&answer);
            tokio::spawn(async move {
                let mut framed = tokio_util::codec::Framed::new(socket, FrameCodec::new(1 << 20));
                while let Some(Ok(payload)) = framed.next().await {
                    let (header, request) = frame::decode_request(&payload).unwrap();
                    let response = match request {
                        Request::ApiVersions(_) => Response::from(ApiVersionsResponse {
                            apis: api::supported_versions(),
                            broker_software_version: "scripted".into(),
                        }),
                        request => answer(&request),
                    };
                    let sent = framed
                        .send(ResponseFrame {
                            correlation_id: header.correlation_id,
                            api_version: header.api_version,
                            body: Ok(&response),
                        })
                        .await;
                    if sent.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}
