//! The accessors of a process's mutable globals (`instrument/globals.rs`
//! exported them): read at every capture, written once at restore before
//! any other call.

use wasmtime::Store;
use wasmtime::component::{Instance, TypedFunc};

use crate::ctx::ProcessCtx;
use crate::instrument::globals::{Plan, getter_name, setter_name};

enum Access {
    Narrow(TypedFunc<(), (i32,)>, TypedFunc<(i32,), ()>),
    Wide(TypedFunc<(), (i64,)>, TypedFunc<(i64,), ()>),
}

/// Getters and setters of every planned global, in plan order.
#[derive(Default)]
pub(crate) struct GlobalAccess(Vec<Access>);

impl GlobalAccess {
    /// Finds the accessors `plan` calls for in `instance`.
    pub(crate) fn find(
        store: &mut Store<ProcessCtx>,
        instance: &Instance,
        plan: &[Plan],
    ) -> wasmtime::Result<Self> {
        let mut out = Vec::with_capacity(plan.len());
        for (j, p) in plan.iter().enumerate() {
            let (get, set) = (getter_name(j), setter_name(j));
            out.push(if p.ty.wide() {
                Access::Wide(
                    instance.get_typed_func(&mut *store, &get)?,
                    instance.get_typed_func(&mut *store, &set)?,
                )
            } else {
                Access::Narrow(
                    instance.get_typed_func(&mut *store, &get)?,
                    instance.get_typed_func(&mut *store, &set)?,
                )
            });
        }
        Ok(GlobalAccess(out))
    }

    /// Every global's value (floats as bits; 32-bit ones zero-extended).
    pub(crate) fn read(&self, store: &mut Store<ProcessCtx>) -> wasmtime::Result<Vec<u64>> {
        let mut values = Vec::with_capacity(self.0.len());
        for a in &self.0 {
            values.push(match a {
                Access::Narrow(get, _) => get.call(&mut *store, ())?.0 as u32 as u64,
                Access::Wide(get, _) => get.call(&mut *store, ())?.0 as u64,
            });
        }
        Ok(values)
    }

    /// Puts `values` back. A 32-bit global's value must fit in 32 bits (the
    /// image is untrusted): the error says which does not.
    pub(crate) fn write(
        &self,
        store: &mut Store<ProcessCtx>,
        values: &[u64],
    ) -> Result<(), WriteError> {
        if values.len() != self.0.len() {
            return Err(WriteError::Image(format!(
                "it holds {} global values, the component has {} globals",
                values.len(),
                self.0.len()
            )));
        }
        for (j, (a, &v)) in self.0.iter().zip(values).enumerate() {
            match a {
                Access::Narrow(_, set) => {
                    let v = u32::try_from(v).map_err(|_| {
                        WriteError::Image(format!(
                            "global {j} is 32 bits wide but its value {v:#x} is not"
                        ))
                    })?;
                    set.call(&mut *store, (v as i32,))
                        .map_err(|e| WriteError::Host(format!("{e:#}")))?;
                }
                Access::Wide(_, set) => set
                    .call(&mut *store, (v as i64,))
                    .map_err(|e| WriteError::Host(format!("{e:#}")))?,
            }
        }
        Ok(())
    }
}

/// Why globals could not be put back.
pub(crate) enum WriteError {
    /// The image's values do not fit.
    Image(String),
    /// Calling a setter failed.
    Host(String),
}
