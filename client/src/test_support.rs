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
