//! The Redis batcher against the real Redis: concurrent requests share writes but each
//! gets exactly its own replies, a transaction stays whole, and one request's failure
//! is its own.

use platform::supervisor::Supervisor;
use redis::{Cmd, Value};
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;
use waiting_room::tickets::redis_batch::{last_reply, RedisBatcher};

const REQUESTS: usize = 200;

#[tokio::test]
async fn concurrent_requests_each_get_their_own_replies() {
    let env = TestEnv::new().await;
    let prefix = env.common.redis_key_prefix.clone();
    let batcher = RedisBatcher::start(
        env.redis.clone(),
        &Supervisor::new(CancellationToken::new()),
    );
    let counter = format!("{prefix}:batch:counter");

    let requests = (0..REQUESTS).map(|index| {
        let batcher = batcher.clone();
        let key = format!("{prefix}:batch:{index}");
        let counter = counter.clone();
        tokio::spawn(async move {
            let replies = batcher
                .send(vec![
                    Cmd::set(&key, format!("value-{index}")),
                    Cmd::incr(&counter, 1),
                    Cmd::get(&key),
                ])
                .await
                .expect("batched request");
            assert_eq!(replies.len(), 3, "one reply per command");
            let value: String = last_reply(replies).expect("GET reply");
            assert_eq!(
                value,
                format!("value-{index}"),
                "request {index} got another's reply"
            );
        })
    });
    let transaction_key = format!("{prefix}:batch:transaction");
    let transaction = batcher.send(vec![
        redis::cmd("MULTI"),
        Cmd::incr(&transaction_key, 1),
        Cmd::incr(&transaction_key, 1),
        redis::cmd("EXEC"),
    ]);
    let wrong_type_key = format!("{prefix}:batch:string");
    let refused = batcher.send(vec![
        Cmd::set(&wrong_type_key, "a string"),
        Cmd::lpush(&wrong_type_key, "not a list"),
    ]);
    let tasks: Vec<_> = requests.collect();
    let (transaction, refused) = tokio::join!(transaction, refused);
    for task in tasks {
        task.await.expect("request task");
    }

    let executed: Vec<i64> = last_reply(transaction.expect("transaction")).expect("EXEC reply");
    assert_eq!(executed, [1, 2], "MULTI/EXEC ran whole");

    let refused = refused.expect("a server error is a reply, not a failed batch");
    assert!(matches!(refused[0], Value::Okay), "{refused:?}");
    assert!(matches!(refused[1], Value::ServerError(_)), "{refused:?}");
    let error = last_reply::<Value>(refused).expect_err("the refused command fails the request");
    assert_eq!(error.code(), Some("WRONGTYPE"), "{error}");

    let counted: i64 = Cmd::get(&counter)
        .query_async(&mut env.redis.clone())
        .await
        .expect("read the counter");
    assert_eq!(counted, REQUESTS as i64, "every command ran exactly once");
}
