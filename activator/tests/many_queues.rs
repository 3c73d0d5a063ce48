//! Many live queues on one activator, against the real Kafka, Redis and PostgreSQL: 200
//! partitions, each with an event of its own and every fourth shared by two events,
//! every queue draining its line over several ticks at once. Behaviour only: each queue
//! reaches the end of its line, every ticket is activated once and in queue order.

mod process;
mod support;

use std::time::{Duration, Instant};

use process::{assert_active_in_order, assert_decisions_published};
use support::{policy, set_queue};
use testkit::TestEnv;
use uuid::Uuid;

const QUEUES: i32 = 200;
/// With 2 per tick, each line takes three ticks.
const TICKETS_PER_QUEUE: usize = 5;
const WAIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn every_queue_of_many_drains_its_line_in_order_once() {
    let env = TestEnv::with_partitions(QUEUES).await;
    for partition in 0..QUEUES {
        set_queue(&env, partition, policy("open", 2, 100, None, 600, 600)).await;
    }
    let activator = support::start_activator(&env).await;
    // Every queue owned and started before its tickets arrive, so they drain at once.
    wait_for(&env, |serving| serving.iter().all(Option::is_some)).await;

    let tickets: Vec<(i32, String, Uuid)> = (0..TICKETS_PER_QUEUE)
        .flat_map(|sequence| {
            (0..QUEUES).map(move |partition| {
                let event = if partition % 4 == 0 && sequence % 2 == 1 {
                    format!("shared-{partition}")
                } else {
                    format!("own-{partition}")
                };
                (partition, event, Uuid::now_v7())
            })
        })
        .collect();
    let received: Vec<(i32, Uuid)> = tickets
        .iter()
        .map(|(partition, _, ticket_id)| (*partition, *ticket_id))
        .collect();
    env.mark_received(&received).await;
    let produced = support::produce_all(&env, &tickets).await;

    let line_end = TICKETS_PER_QUEUE as i64;
    wait_for(&env, |serving| {
        serving.iter().all(|counter| *counter == Some(line_end))
    })
    .await;
    for partition in 0..QUEUES {
        let line: Vec<(i64, Uuid)> = produced
            .iter()
            .filter(|(of, _, _)| *of == partition)
            .map(|(_, queue_number, ticket_id)| (*queue_number, *ticket_id))
            .collect();
        assert_eq!(line.len(), TICKETS_PER_QUEUE);
        assert_active_in_order(&env, partition, &line).await;
    }
    let all: Vec<(i64, Uuid)> = produced
        .iter()
        .map(|(_, queue_number, ticket_id)| (*queue_number, *ticket_id))
        .collect();
    assert_decisions_published(&env, &all).await;
    activator.stop().await.expect("clean shutdown");
}

/// Waits (up to [`WAIT`]) until every queue's serving counter (`None`: not created yet)
/// satisfies `done`, read in one round trip each time.
async fn wait_for(env: &TestEnv, done: impl Fn(&[Option<i64>]) -> bool) {
    let keys = env.redis_keys();
    let started = Instant::now();
    loop {
        let mut pipe = redis::pipe();
        for partition in 0..QUEUES {
            pipe.get(keys.serving(partition));
        }
        let serving: Vec<Option<i64>> = pipe
            .query_async(&mut env.redis.clone())
            .await
            .expect("GET serving counters");
        if done(&serving) {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "queues not there yet: {:?}",
            serving
                .iter()
                .enumerate()
                .filter(|(_, counter)| !done(&[**counter]))
                .map(|(partition, counter)| (partition, *counter))
                .take(10)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
