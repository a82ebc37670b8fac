//! Master key rotation over the [`Store`]: which key each stored sealed value is under, and
//! re-sealing every value under the vault's current key in batches, online (each value is a
//! compare-and-swap, so a value the running server rewrites meanwhile is never overwritten).

use std::collections::BTreeMap;

use crate::vault::{SealedBy, Vault};
use crate::{Result, SealedColumn, Store, StoreError};

/// Sealed values per column and key.
pub type Usage = BTreeMap<(SealedColumn, SealedBy), u64>;

/// Counts the stored sealed values per column and per key (from their key ids; values from
/// before key ids count as [`SealedBy::Legacy`]).
pub async fn usage(store: &dyn Store, batch: u32) -> Result<Usage> {
    let mut out = Usage::new();
    for column in SealedColumn::ALL {
        let mut after: Option<Vec<String>> = None;
        loop {
            let values = store
                .sealed_values(column, after.as_deref(), batch.max(1))
                .await?;
            for value in &values {
                *out.entry((column, Vault::sealed_by(&value.sealed)))
                    .or_default() += 1;
            }
            match values.last() {
                Some(last) if values.len() == batch.max(1) as usize => {
                    after = Some(last.key.clone())
                }
                _ => break,
            }
        }
    }
    Ok(out)
}

/// What [`reseal_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Values re-sealed under the current key.
    pub resealed: u64,
    /// Values already under the current key.
    pub current: u64,
    /// Values that changed while being re-sealed (left as the writer put them).
    pub changed: u64,
}

/// Re-seals every stored value that is not under `vault`'s current key, `batch` rows at a
/// time. A value that does not open with any key of the vault stops the pass with an error
/// naming its row (nothing after it is touched; what was re-sealed stays re-sealed).
pub async fn reseal_all(store: &dyn Store, vault: &Vault, batch: u32) -> Result<Resealed> {
    let mut done = Resealed::default();
    for column in SealedColumn::ALL {
        let mut after: Option<Vec<String>> = None;
        loop {
            let values = store
                .sealed_values(column, after.as_deref(), batch.max(1))
                .await?;
            for value in &values {
                let resealed = vault.reseal(&value.sealed).map_err(|error| {
                    StoreError::Vault(format!(
                        "{} of row {}: {error}",
                        column.name(),
                        value.key.join("/")
                    ))
                })?;
                match resealed {
                    None => done.current += 1,
                    Some(bytes) => {
                        if store.replace_sealed(value, &bytes).await? {
                            done.resealed += 1;
                        } else {
                            done.changed += 1;
                        }
                    }
                }
            }
            match values.last() {
                Some(last) if values.len() == batch.max(1) as usize => {
                    after = Some(last.key.clone())
                }
                _ => break,
            }
        }
    }
    Ok(done)
}

/// Checks at start that the vault opens what the store holds: the first value of every sealed
/// column must open. Catches a lost key file (a fresh key was just created) or a changed
/// `SWITCHBOARD_MASTER_KEY` before anything depends on the secrets.
pub async fn check_opens(store: &dyn Store, vault: &Vault) -> Result<()> {
    for column in SealedColumn::ALL {
        if let Some(value) = store.sealed_values(column, None, 1).await?.first() {
            vault.open_sealed(&value.sealed).map_err(|error| {
                StoreError::Vault(format!(
                    "the master key does not open the secrets stored in the database ({} of row {}): {error}",
                    column.name(),
                    value.key.join("/")
                ))
            })?;
        }
    }
    Ok(())
}
