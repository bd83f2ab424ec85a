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
    /// The candidates are walked a few times instead of collected, so a pick allocates nothing. They
    /// read live counters that other workers change meanwhile, so a later walk may see fewer of them
    /// than an earlier one: a candidate seen in the first walk is then chosen, never none.
    pub(super) fn choose<I>(self, candidates: I, turn: usize) -> Option<usize>
    where
        I: Iterator<Item = (usize, usize)> + Clone,
    {
        match self {
            Strategy::RoundRobin => nth_in_turn(candidates, turn),
            Strategy::LeastSessions => {
                let (least, fewest) = candidates.clone().min_by_key(|&(_, open)| open)?;
                nth_in_turn(candidates.filter(move |&(_, open)| open == fewest), turn).or(Some(least))
            }
        }
    }
}

fn nth_in_turn<I: Iterator<Item = (usize, usize)> + Clone>(candidates: I, turn: usize) -> Option<usize> {
    let mut first = None;
    let mut count = 0;
    for (index, _) in candidates.clone() {
        first.get_or_insert(index);
        count += 1;
    }
    if count == 0 {
        return None;
    }
    candidates.map(|(index, _)| index).nth(turn % count).or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(strategy: Strategy, candidates: &[(usize, usize)], turns: std::ops::Range<usize>) -> Vec<usize> {
        turns.map(|turn| strategy.choose(candidates.iter().copied(), turn).unwrap()).collect()
    }

    #[test]
    fn a_candidate_is_chosen_even_when_counts_change_between_walks() {
        use std::cell::Cell;
        for strategy in [Strategy::RoundRobin, Strategy::LeastSessions] {
            for turn in 0..3 {
                // Another worker opens a session on instance 2 while the candidates are walked: from the
                // third walk on it is no longer among the least loaded, or (round robin over a filtered
                // view) no longer a candidate at all.
                let open = [Cell::new(0), Cell::new(0), Cell::new(0)];
                let visits = Cell::new(0);
                let candidates = (0..3).map(|index| (index, open[index].get())).filter(|&(_, count)| count == 0).inspect(|&(index, _)| {
                    if index == 2 {
                        visits.set(visits.get() + 1);
                        if visits.get() == 2 {
                            open[2].set(1);
                        }
                    }
                });
                assert!(strategy.choose(candidates, turn).is_some(), "{strategy:?} turn {turn}");
            }
        }
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
