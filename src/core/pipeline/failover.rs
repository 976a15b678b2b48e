//! What happens after an attempt failed before any byte reached the client: the next
//! target, or the gateway's own answer when none is left.

use super::RouteState;
use crate::core::error::GatewayError;
use crate::core::routing::Routing;

/// The decision after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Try `next` (attempt number `attempt`, from 1) after `failed`.
    Retry {
        failed: String,
        next: String,
        attempt: usize,
    },
    /// No target left (or the status is not one to move on from): answer `error`.
    Answer {
        failed: String,
        attempts: usize,
        error: GatewayError,
    },
}

/// Moves `state` on after its current attempt ended with `status` (502 when there was no
/// response) and the provider's `Retry-After`. No response at all (connection refused,
/// reset, timeout: 502/504) always moves on; other statuses when the route retries them.
pub fn next_attempt(
    routing: &Routing,
    state: &mut RouteState,
    status: u16,
    retry_after_s: Option<u64>,
) -> Next {
    let name = |s: &RouteState| {
        s.target()
            .and_then(|t| routing.targets.get(t))
            .map_or(String::new(), |t| t.name.clone())
    };
    let failed = name(state);
    let retryable = matches!(status, 502 | 504)
        || routing
            .routes
            .get(state.route)
            .is_some_and(|r| r.retry_statuses.contains(&status));
    state.retry_after_s = retry_after_s;
    if retryable && state.attempt + 1 < state.order.len() {
        state.attempt += 1;
        return Next::Retry {
            failed,
            next: name(state),
            attempt: state.attempt + 1,
        };
    }
    Next::Answer {
        failed,
        attempts: state.attempt + 1,
        error: GatewayError::TargetsFailed { status },
    }
}
