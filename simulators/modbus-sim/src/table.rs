//! Sparse Modbus tables stored as sorted blocks of contiguous addresses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One of the four Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// Read/write bits (FC1, FC5, FC15).
    #[serde(alias = "coil", alias = "CoilRegister")]
    Coils,
    /// Read-only bits (FC2).
    #[serde(
        alias = "discrete",
        alias = "discrete_input",
        alias = "DiscreteInputRegister"
    )]
    DiscreteInputs,
    /// Read-only registers (FC4).
    #[serde(alias = "input", alias = "input_register", alias = "InputRegister")]
    InputRegisters,
    /// Read/write registers (FC3, FC6, FC16, FC23).
    #[serde(
        alias = "holding",
        alias = "holding_register",
        alias = "HoldingRegister"
    )]
    HoldingRegisters,
}

impl TableKind {
    /// Whether the table holds bits (coils, discrete inputs) rather than registers.
    pub fn is_bits(self) -> bool {
        matches!(self, TableKind::Coils | TableKind::DiscreteInputs)
    }

    /// Short lowercase name used in messages and the map format.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Coils => "coils",
            TableKind::DiscreteInputs => "discrete_inputs",
            TableKind::InputRegisters => "input_registers",
            TableKind::HoldingRegisters => "holding_registers",
        }
    }
}

impl std::fmt::Display for TableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone)]
struct Block<T> {
    start: u32,
    values: Vec<T>,
}

impl<T> Block<T> {
    fn end(&self) -> u32 {
        self.start + self.values.len() as u32
    }
}

/// A sparse table: only mapped addresses exist; everything else is an
/// illegal data address.
#[derive(Debug, Clone)]
pub(crate) struct Table<T> {
    blocks: Vec<Block<T>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self { blocks: Vec::new() }
    }
}

impl<T: Copy> Table<T> {
    /// Builds a table from individual cells; adjacent addresses are merged
    /// into one block so a read may span them.
    pub(crate) fn from_cells(cells: &BTreeMap<u16, T>) -> Self {
        let mut blocks: Vec<Block<T>> = Vec::new();
        for (&addr, &v) in cells {
            let addr = u32::from(addr);
            match blocks.last_mut() {
                Some(b) if b.end() == addr => b.values.push(v),
                _ => blocks.push(Block {
                    start: addr,
                    values: vec![v],
                }),
            }
        }
        Self { blocks }
    }

    fn block_index(&self, addr: u32) -> Option<usize> {
        let i = self.blocks.partition_point(|b| b.start <= addr);
        let i = i.checked_sub(1)?;
        (addr < self.blocks[i].end()).then_some(i)
    }

    /// The values at `addr..addr+count`, if every address is mapped.
    pub(crate) fn read(&self, addr: u16, count: usize) -> Option<&[T]> {
        let a = u32::from(addr);
        let b = &self.blocks[self.block_index(a)?];
        let off = (a - b.start) as usize;
        b.values.get(off..off.checked_add(count)?)
    }

    /// Overwrites `addr..addr+values.len()`; `false` (and nothing written)
    /// when any address is not mapped.
    pub(crate) fn write(&mut self, addr: u16, values: &[T]) -> bool {
        let a = u32::from(addr);
        let Some(i) = self.block_index(a) else {
            return false;
        };
        let b = &mut self.blocks[i];
        let off = (a - b.start) as usize;
        match b.values.get_mut(off..off + values.len()) {
            Some(dst) => {
                dst.copy_from_slice(values);
                true
            }
            None => false,
        }
    }

    /// Whether every address of `addr..addr+count` is mapped.
    pub(crate) fn contains(&self, addr: u16, count: usize) -> bool {
        self.read(addr, count).is_some()
    }

    /// Number of mapped addresses.
    pub(crate) fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.values.len()).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sparse_blocks() {
        let mut cells = BTreeMap::new();
        for a in 0..10u16 {
            cells.insert(a, a);
        }
        for a in 20..=u16::MAX {
            cells.insert(a, 1);
        }
        let mut t = Table::from_cells(&cells);
        assert_eq!(t.len(), 10 + 65536 - 20);
        assert_eq!(t.read(2, 3).unwrap(), &[2, 3, 4]);
        assert!(t.read(8, 3).is_none());
        assert!(t.read(10, 1).is_none());
        assert!(t.read(u16::MAX, 1).is_some());
        assert!(t.read(u16::MAX, 2).is_none());
        assert!(t.write(9, &[99]));
        assert!(!t.write(9, &[1, 2]));
        assert_eq!(t.read(9, 1).unwrap(), &[99]);
        assert!(!Table::<u16>::default().contains(0, 1));
    }
}
