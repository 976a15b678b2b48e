//! What the log phase concludes from a finished request: whether its last attempt counts as
//! its target answering (its health is cleared), what its token reservations settle at, and
//! the targets its attempts went to (for the metrics' labels).

use super::RouteState;
use crate::core::config::GatewayConfig;

/// The last upstream attempt answered (a status below 500 that is not 429) and the gateway
/// did not answer itself: its target is healthy again. Failures were recorded when the
/// request failed over.
pub fn answered(last_upstream_status: Option<u16>, gateway_answered: bool) -> bool {
    !gateway_answered && last_upstream_status.is_some_and(|s| s != 0 && s < 500 && s != 429)
}

/// The tokens the request's reservations settle at: its usage; a failed request whose usage
/// is unknown used nothing (providers do not bill errors); a success with unknown usage
/// keeps its reservation (`None`).
pub fn settled_tokens(total: Option<u64>, status: u16) -> Option<u64> {
    total.or((status >= 400).then_some(0))
}

/// The name of each attempt's target, in order.
pub fn attempted_targets<'a>(config: &'a GatewayConfig, route: &RouteState) -> Vec<&'a str> {
    route
        .order
        .iter()
        .take(route.attempt + 1)
        .map(|t| {
            config
                .routing
                .targets
                .get(*t)
                .map_or("", |t| t.name.as_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_a_status_below_500_other_than_429() {
        assert!(answered(Some(200), false));
        assert!(
            answered(Some(404), false),
            "the provider answered: a client error"
        );
        assert!(!answered(Some(429), false));
        assert!(!answered(Some(503), false));
        assert!(!answered(Some(0), false), "no response");
        assert!(!answered(None, false));
        assert!(!answered(Some(200), true), "the gateway answered itself");
    }

    #[test]
    fn settlement() {
        assert_eq!(settled_tokens(Some(42), 200), Some(42));
        assert_eq!(settled_tokens(Some(42), 500), Some(42));
        assert_eq!(settled_tokens(None, 502), Some(0));
        assert_eq!(settled_tokens(None, 200), None);
    }

    #[test]
    fn targets_of_the_attempts_made() {
        let cfg = GatewayConfig::from_json(
            br#"{"targets":[{"name":"a","provider":"openai","base_url":"http://h:1"},
                           {"name":"b","provider":"openai","base_url":"http://h:2"}],
                "routes":[{"targets":["a","b"]}]}"#,
        )
        .unwrap();
        let mut st = RouteState::new(0, vec![1, 0]);
        assert_eq!(attempted_targets(&cfg, &st), ["b"]);
        st.attempt = 1;
        assert_eq!(attempted_targets(&cfg, &st), ["b", "a"]);
    }
}
