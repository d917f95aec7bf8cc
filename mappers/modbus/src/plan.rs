//! The pure read planner: merges the properties of one unit that are due in the same tick
//! into as few read requests as the limits allow.
//!
//! Per table, spans are sorted by address and merged greedily while the merged request
//! stays within the table's maximum (125 registers / 2000 bits, or the device's configured
//! maximum) and the unread gap between two spans is at most `max_gap`. Overlapping and
//! duplicate spans share a request. Tables are never mixed (coils and holding registers
//! need different function codes). With `single_request` every span gets its own request.
//!
//! Greedy merging in address order is optimal here: a request is a contiguous window, so
//! the earliest span not yet covered must start some request, and extending that request as
//! far as the limits allow never forces an extra one later.

use crate::config::{Limits, Table};

/// An address range one property reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// The table.
    pub table: Table,
    /// First address.
    pub offset: u16,
    /// Registers or bits.
    pub count: u16,
}

impl Span {
    fn end(self) -> u32 {
        u32::from(self.offset) + u32::from(self.count)
    }
}

/// One read request of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadRequest {
    /// The table (and so the function code).
    pub table: Table,
    /// First address.
    pub offset: u16,
    /// Registers or bits.
    pub count: u16,
}

/// Where one span's data lies in the replies of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    /// Index into [`Plan::requests`].
    pub request: usize,
    /// Index of the span's first register or bit within that request's reply.
    pub start: usize,
    /// Registers or bits.
    pub count: usize,
}

/// The requests to send and, per input span (same order), where its data is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Requests in table order, then address order.
    pub requests: Vec<ReadRequest>,
    /// One slot per input span, in input order.
    pub slots: Vec<Slot>,
}

impl Plan {
    /// The indices of the spans served by request `r`.
    pub fn spans_of(&self, r: usize) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.request == r)
            .map(|(i, _)| i)
    }
}

/// Plans the reads for `spans` (all of one unit) under `limits`.
pub fn plan(spans: &[Span], limits: &Limits) -> Plan {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].table, spans[i].offset, spans[i].count));

    let mut requests: Vec<ReadRequest> = Vec::new();
    let mut slots = vec![
        Slot {
            request: 0,
            start: 0,
            count: 0,
        };
        spans.len()
    ];
    // The request being grown: (index, start, end).
    let mut open: Option<(usize, u32, u32)> = None;
    for i in order {
        let s = spans[i];
        let max = u32::from(limits.max_for(s.table));
        let joined = match open {
            Some((r, start, end)) if !limits.single_request && requests[r].table == s.table => {
                let gap = u32::from(s.offset).saturating_sub(end);
                let new_end = end.max(s.end());
                (gap <= u32::from(limits.max_gap) && new_end - start <= max)
                    .then_some((r, start, new_end))
            }
            _ => None,
        };
        let (r, start, end) = match joined {
            Some(j) => j,
            None => {
                requests.push(ReadRequest {
                    table: s.table,
                    offset: s.offset,
                    count: 0,
                });
                (requests.len() - 1, u32::from(s.offset), s.end())
            }
        };
        // end - start <= max <= 2000 or a single span's count: always fits u16.
        requests[r].count = u16::try_from(end - start).unwrap_or(u16::MAX);
        open = Some((r, start, end));
        slots[i] = Slot {
            request: r,
            start: usize::from(s.offset - requests[r].offset),
            count: usize::from(s.count),
        };
    }
    Plan { requests, slots }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn h(offset: u16, count: u16) -> Span {
        Span {
            table: Table::Holding,
            offset,
            count,
        }
    }

    fn req(table: Table, offset: u16, count: u16) -> ReadRequest {
        ReadRequest {
            table,
            offset,
            count,
        }
    }

    #[test]
    fn ten_contiguous_registers_make_one_request() {
        let spans: Vec<Span> = (0..10).map(|i| h(100 + i, 1)).collect();
        let p = plan(&spans, &Limits::default());
        assert_eq!(p.requests, vec![req(Table::Holding, 100, 10)]);
        for (i, s) in p.slots.iter().enumerate() {
            assert_eq!((s.request, s.start, s.count), (0, i, 1));
        }
    }

    #[test]
    fn gaps_split_unless_allowed() {
        let spans = [h(0, 2), h(5, 2)];
        let p = plan(&spans, &Limits::default());
        assert_eq!(
            p.requests,
            vec![req(Table::Holding, 0, 2), req(Table::Holding, 5, 2)]
        );
        let limits = Limits {
            max_gap: 3,
            ..Limits::default()
        };
        let p = plan(&spans, &limits);
        assert_eq!(p.requests, vec![req(Table::Holding, 0, 7)]);
        assert_eq!(p.slots[1].start, 5);
        let limits = Limits {
            max_gap: 2,
            ..Limits::default()
        };
        assert_eq!(plan(&spans, &limits).requests.len(), 2);
    }

    #[test]
    fn more_than_125_registers_split() {
        let spans: Vec<Span> = (0..65).map(|i| h(i * 2, 2)).collect(); // 130 registers
        let p = plan(&spans, &Limits::default());
        assert_eq!(
            p.requests,
            vec![req(Table::Holding, 0, 124), req(Table::Holding, 124, 6)]
        );
        let limits = Limits {
            max_registers: 10,
            ..Limits::default()
        };
        assert_eq!(plan(&spans, &limits).requests.len(), 13);
    }

    #[test]
    fn bits_up_to_2000_per_request() {
        let spans: Vec<Span> = (0..2100)
            .map(|i| Span {
                table: Table::Coil,
                offset: i,
                count: 1,
            })
            .collect();
        let p = plan(&spans, &Limits::default());
        assert_eq!(
            p.requests,
            vec![req(Table::Coil, 0, 2000), req(Table::Coil, 2000, 100)]
        );
        assert_eq!(
            p.slots[2050],
            Slot {
                request: 1,
                start: 50,
                count: 1
            }
        );
    }

    #[test]
    fn tables_are_never_merged() {
        let spans = [
            Span {
                table: Table::Coil,
                offset: 0,
                count: 1,
            },
            h(0, 1),
            Span {
                table: Table::Input,
                offset: 1,
                count: 1,
            },
            Span {
                table: Table::DiscreteInput,
                offset: 1,
                count: 1,
            },
        ];
        let p = plan(&spans, &Limits::default());
        assert_eq!(p.requests.len(), 4);
        assert_eq!(p.slots[1].request, 3, "holding sorts last");
    }

    #[test]
    fn overlaps_and_duplicates_share_a_request() {
        let spans = [h(10, 4), h(12, 2), h(10, 4), h(11, 1)];
        let p = plan(&spans, &Limits::default());
        assert_eq!(p.requests, vec![req(Table::Holding, 10, 4)]);
        assert_eq!(p.slots[1].start, 2);
        assert_eq!(p.slots[3].start, 1);
    }

    #[test]
    fn single_request_opt_out() {
        let spans = [h(0, 1), h(1, 1), h(2, 1)];
        let limits = Limits {
            single_request: true,
            ..Limits::default()
        };
        let p = plan(&spans, &limits);
        assert_eq!(p.requests.len(), 3);
        assert_eq!(p.spans_of(1).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn top_of_the_address_space() {
        let spans = [h(65534, 2), h(65530, 4)];
        let p = plan(&spans, &Limits::default());
        assert_eq!(p.requests, vec![req(Table::Holding, 65530, 6)]);
    }

    fn span() -> impl Strategy<Value = Span> {
        (0u16..4, 0u16..400, 1u16..=8).prop_map(|(t, offset, count)| Span {
            table: [
                Table::Coil,
                Table::DiscreteInput,
                Table::Input,
                Table::Holding,
            ][usize::from(t)],
            offset,
            count,
        })
    }

    proptest! {
        /// Every span is covered by its slot, requests respect the limits and never mix tables.
        #[test]
        fn plans_are_sound(spans in proptest::collection::vec(span(), 0..60), max in 8u16..130, gap in 0u16..5) {
            let limits = Limits { max_registers: max.min(125), max_bits: max, max_gap: gap, single_request: false };
            let p = plan(&spans, &limits);
            for (s, slot) in spans.iter().zip(&p.slots) {
                let r = p.requests[slot.request];
                prop_assert_eq!(r.table, s.table);
                prop_assert_eq!(usize::from(r.offset) + slot.start, usize::from(s.offset));
                prop_assert!(slot.start + slot.count <= usize::from(r.count));
            }
            for r in &p.requests {
                prop_assert!(r.count <= limits.max_for(r.table).max(8));
            }
            prop_assert!(p.requests.len() <= spans.len());
        }
    }
}
