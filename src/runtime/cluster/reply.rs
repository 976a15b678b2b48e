//! The admit script's answer, from Redis values to `core::cluster::ask::Reply`.

use redis::Value;

use crate::core::cluster::ask::{CounterReply, Reply};
use crate::core::policy::approx::SyncAnswer;

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// `{refused, now_ms, {used, at, bucket, count, ...}...}` with `counters` entries; `None`
/// when the answer has another shape.
pub fn parse(v: &Value, counters: usize) -> Option<Reply> {
    let Value::Array(items) = v else { return None };
    if items.len() != counters + 2 {
        return None;
    }
    let refused = usize::try_from(number(&items[0])?).ok()?;
    let now_ms = number(&items[1])?;
    let mut out = Vec::with_capacity(counters);
    for item in &items[2..] {
        let Value::Array(fields) = item else {
            return None;
        };
        if fields.len() < 2 || fields.len() % 2 != 0 || fields.len() > 2 + 2 * 64 {
            return None;
        }
        let mut buckets = Vec::with_capacity(fields.len() / 2 - 1);
        for pair in fields[2..].chunks(2) {
            buckets.push((number(&pair[0])?, number(&pair[1])?));
        }
        out.push(CounterReply {
            used: number(&fields[0])?,
            at: number(&fields[1])?,
            buckets,
        });
    }
    Some(Reply {
        refused,
        now_ms,
        counters: out,
    })
}

/// The sync script's `{total, nodes, demand}`.
pub fn sync_answer(v: &Value) -> Option<SyncAnswer> {
    let Value::Array(items) = v else { return None };
    let [total, nodes, demand] = items.as_slice() else {
        return None;
    };
    Some(SyncAnswer {
        total: number(total)?,
        nodes: number(nodes)?,
        demand_total: number(demand)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(n: i64) -> Value {
        Value::Int(n)
    }

    #[test]
    fn answers() {
        let v = Value::Array(vec![
            int(0),
            int(1_764_547_230_000),
            Value::Array(vec![int(5), int(588_182_410), int(588_182_405), int(3)]),
            Value::Array(vec![int(2), int(0)]),
        ]);
        let r = parse(&v, 2).unwrap();
        assert_eq!(r.refused, 0);
        assert_eq!(r.now_ms, 1_764_547_230_000);
        assert_eq!(r.counters[0].buckets, vec![(588_182_405, 3)]);
        assert_eq!(r.counters[1].used, 2);
        // wrong counts and shapes are refused
        assert!(parse(&v, 3).is_none());
        assert!(parse(&int(1), 0).is_none());
        let odd = Value::Array(vec![
            int(0),
            int(1),
            Value::Array(vec![int(5), int(1), int(2)]),
        ]);
        assert!(parse(&odd, 1).is_none());
        let negative = Value::Array(vec![int(0), int(1), Value::Array(vec![int(-5), int(1)])]);
        assert!(parse(&negative, 1).is_none());
        let a = sync_answer(&Value::Array(vec![int(40), int(3), int(12)])).unwrap();
        assert_eq!((a.total, a.nodes, a.demand_total), (40, 3, 12));
        assert!(sync_answer(&Value::Array(vec![int(40), int(3)])).is_none());
    }
}
