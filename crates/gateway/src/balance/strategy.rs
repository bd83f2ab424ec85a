//! The balancing strategies: which of the candidate instances gets the next session.
//!
//! A strategy only chooses among candidates it is given (UP, not ejected, not tried yet); it keeps no
//! state of its own. Ties are broken by the service's round-robin turn, so equal instances take turns.

use thiserror::Error;

/// `server.loadBalancing.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// `round-robin`: each candidate in turn.
    #[default]
    RoundRobin,
    /// `least-sessions`: the candidate with the fewest sessions open through this gateway, round
    /// robin among those with equally few.
    LeastSessions,
}

/// A strategy name that is neither `round-robin` nor `least-sessions`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("`{0}` is neither `round-robin` nor `least-sessions`")]
pub struct UnknownStrategy(pub String);

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(text: &str) -> Result<Strategy, UnknownStrategy> {
        match text {
            "round-robin" => Ok(Strategy::RoundRobin),
            "least-sessions" => Ok(Strategy::LeastSessions),
            other => Err(UnknownStrategy(other.to_owned())),
        }
    }
}

impl Strategy {
    /// Chooses among `candidates`, each an instance index with its open session count, on the
    /// service's round-robin `turn`; `None` when there is no candidate.
    ///
    /// The candidates are walked a few times instead of collected, so a pick allocates nothing.
    pub(super) fn choose<I>(self, candidates: I, turn: usize) -> Option<usize>
    where
        I: Iterator<Item = (usize, usize)> + Clone,
    {
        match self {
            Strategy::RoundRobin => nth_in_turn(candidates, turn),
            Strategy::LeastSessions => {
                let fewest = candidates.clone().map(|(_, open)| open).min()?;
                nth_in_turn(candidates.filter(move |&(_, open)| open == fewest), turn)
            }
        }
    }
}

fn nth_in_turn<I: Iterator<Item = (usize, usize)> + Clone>(candidates: I, turn: usize) -> Option<usize> {
    let count = candidates.clone().count();
    if count == 0 {
        return None;
    }
    candidates.map(|(index, _)| index).nth(turn % count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(strategy: Strategy, candidates: &[(usize, usize)], turns: std::ops::Range<usize>) -> Vec<usize> {
        turns.map(|turn| strategy.choose(candidates.iter().copied(), turn).unwrap()).collect()
    }

    #[test]
    fn round_robin_takes_turns_whatever_the_load() {
        assert_eq!(choose(Strategy::RoundRobin, &[(0, 5), (2, 0), (3, 9)], 0..6), [0, 2, 3, 0, 2, 3]);
    }

    #[test]
    fn least_sessions_prefers_the_least_loaded_and_takes_turns_on_ties() {
        assert_eq!(choose(Strategy::LeastSessions, &[(0, 5), (1, 2), (2, 9)], 0..3), [1, 1, 1]);
        assert_eq!(choose(Strategy::LeastSessions, &[(0, 2), (1, 7), (2, 2)], 0..4), [0, 2, 0, 2]);
    }

    #[test]
    fn no_candidate_no_choice() {
        assert_eq!(Strategy::RoundRobin.choose(std::iter::empty(), 3), None);
        assert_eq!(Strategy::LeastSessions.choose(std::iter::empty(), 3), None);
    }

    #[test]
    fn names() {
        assert_eq!("round-robin".parse(), Ok(Strategy::RoundRobin));
        assert_eq!("least-sessions".parse(), Ok(Strategy::LeastSessions));
        assert_eq!("random".parse::<Strategy>(), Err(UnknownStrategy("random".into())));
    }
}
