//! Connection ids by 4-tuple, oldest first. Nearly every tuple has exactly one connection, so
//! that one is stored inline: a heap-allocated list per tuple cost ~3 MiB at the table's cap.
use std::collections::HashMap;

use crate::event::Endpoints;

enum Ids {
    One(u64),
    Many(Vec<u64>),
}

impl Ids {
    fn as_slice(&self) -> &[u64] {
        match self {
            Ids::One(id) => std::slice::from_ref(id),
            Ids::Many(ids) => ids,
        }
    }
}

#[derive(Default)]
pub struct TupleIndex(HashMap<Endpoints, Ids>);

impl TupleIndex {
    pub fn add(&mut self, endpoints: Endpoints, id: u64) {
        match self.0.get_mut(&endpoints) {
            None => {
                self.0.insert(endpoints, Ids::One(id));
            }
            Some(Ids::One(first)) => {
                let first = *first;
                self.0.insert(endpoints, Ids::Many(vec![first, id]));
            }
            Some(Ids::Many(ids)) => ids.push(id),
        }
    }

    pub fn remove(&mut self, endpoints: &Endpoints, id: u64) {
        let Some(entry) = self.0.get_mut(endpoints) else { return };
        let left = match entry {
            Ids::One(only) => (*only != id).then_some(*only),
            Ids::Many(ids) => {
                ids.retain(|i| *i != id);
                match ids.as_slice() {
                    [] => None,
                    [only] => Some(*only),
                    _ => return,
                }
            }
        };
        match left {
            Some(only) => *entry = Ids::One(only),
            None => {
                self.0.remove(endpoints);
            }
        }
    }

    /// Ids with these endpoints, oldest first.
    pub fn get(&self, endpoints: &Endpoints) -> &[u64] {
        self.0.get(endpoints).map_or(&[], Ids::as_slice)
    }

    pub fn contains(&self, endpoints: &Endpoints) -> bool {
        self.0.contains_key(endpoints)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Family;

    #[test]
    fn one_then_many_then_one_then_none() {
        let e = Endpoints { family: Family::Ipv4, laddr: "10.0.0.1".parse().unwrap(), lport: 1, raddr: "10.0.0.2".parse().unwrap(), rport: 2 };
        let mut t = TupleIndex::default();
        t.add(e, 7);
        assert_eq!(t.get(&e), &[7]);
        t.add(e, 9);
        t.add(e, 11);
        assert_eq!(t.get(&e), &[7, 9, 11]);
        t.remove(&e, 9);
        t.remove(&e, 7);
        assert_eq!(t.get(&e), &[11]);
        assert!(matches!(t.0.get(&e), Some(Ids::One(11))));
        t.remove(&e, 5); // not there: nothing changes
        assert_eq!(t.get(&e), &[11]);
        t.remove(&e, 11);
        assert!(t.is_empty() && !t.contains(&e) && t.get(&e).is_empty());
    }
}
