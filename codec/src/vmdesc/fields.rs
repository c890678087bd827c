//! The field walker: reads a device section body field by field as its description says.

use ramstream_spec::stream::SectionType;

use super::description::{FieldDescription, FieldKind, VmsdDescription};
use super::error::{Location, VmdescError};
use super::value::{Struct, Subsection, Value};
use super::{MAX_DEPTH, MAX_VALUES};

/// The null-pointer placeholder QEMU writes for a NULL element of an array of pointers.
const NULLPTR_MARKER: u8 = b'0';

/// One step of the path to the field being decoded, for error messages.
#[derive(Clone, Copy)]
enum Segment<'a> {
    Field(&'a str),
    Index(u64),
    Subsection(&'a str),
}

pub(super) struct Walker<'a> {
    device: &'a str,
    body: &'a [u8],
    pos: usize,
    values: usize,
    path: Vec<Segment<'a>>,
}

type Result<T> = core::result::Result<T, VmdescError>;

impl<'a> Walker<'a> {
    pub(super) fn new(device: &'a str, body: &'a [u8]) -> Self {
        Self {
            device,
            body,
            pos: 0,
            values: 0,
            path: Vec::new(),
        }
    }

    pub(super) fn position(&self) -> usize {
        self.pos
    }

    fn location(&self, offset: usize) -> Location {
        let mut path = String::new();
        for segment in &self.path {
            match segment {
                Segment::Field(name) | Segment::Subsection(name) => {
                    if !path.is_empty() {
                        path.push('/');
                    }
                    path.push_str(name);
                }
                Segment::Index(i) => {
                    path.push('[');
                    path.push_str(&i.to_string());
                    path.push(']');
                }
            }
        }
        Location {
            device: self.device.to_owned(),
            path,
            offset,
        }
    }

    fn remaining(&self) -> usize {
        self.body.len() - self.pos
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let available = self.remaining();
        match usize::try_from(n) {
            Ok(n) if n <= available => {
                let bytes = &self.body[self.pos..self.pos + n];
                self.pos += n;
                Ok(bytes)
            }
            _ => Err(VmdescError::Truncated {
                at: self.location(self.pos),
                needed: n,
                available,
            }),
        }
    }

    fn count_values(&mut self, n: u64) -> Result<()> {
        match usize::try_from(n)
            .ok()
            .and_then(|n| self.values.checked_add(n))
        {
            Some(total) if total <= MAX_VALUES => {
                self.values = total;
                Ok(())
            }
            _ => Err(VmdescError::TooManyValues {
                at: self.location(self.pos),
                limit: MAX_VALUES,
            }),
        }
    }

    /// Walks one vmsd: its fields, then the subsections that follow them.
    pub(super) fn vmsd(&mut self, desc: &'a VmsdDescription, depth: usize) -> Result<Struct<'a>> {
        if depth > MAX_DEPTH {
            return Err(VmdescError::TooDeep {
                at: self.location(self.pos),
                limit: MAX_DEPTH,
            });
        }
        let mut fields: Vec<(&'a str, Value<'a>)> = Vec::with_capacity(desc.fields.len());
        for field in &desc.fields {
            self.path.push(Segment::Field(&field.name));
            let value = if let Some(len) = field.array_len {
                self.array(field, len, depth)?
            } else if let Some(index) = field.index {
                self.path.push(Segment::Index(index));
                let v = self.element(field, depth)?;
                self.path.pop();
                v
            } else {
                self.element(field, depth)?
            };
            self.path.pop();
            push_field(&mut fields, field, value);
        }
        let subsections = self.subsections(desc, depth)?;
        Ok(Struct {
            fields,
            subsections,
        })
    }

    fn array(&mut self, field: &'a FieldDescription, len: u64, depth: usize) -> Result<Value<'a>> {
        // Every element takes at least `size` bytes (capabilities at least their length
        // byte); refuse before allocating when they cannot fit.
        let min_size = match FieldKind::of(&field.field_type) {
            FieldKind::Capability => 1,
            _ => field.size,
        };
        let available = self.remaining();
        if len
            .checked_mul(min_size)
            .is_none_or(|total| total > available as u64)
        {
            return Err(VmdescError::ArrayTooLong {
                at: self.location(self.pos),
                array_len: len,
                element_size: field.size,
                available,
            });
        }
        self.count_values(len)?;
        // `len` values were counted against MAX_VALUES, so this allocation is bounded.
        let mut items = Vec::with_capacity(len as usize);
        for i in 0..len {
            self.path.push(Segment::Index(i));
            items.push(self.element(field, depth)?);
            self.path.pop();
        }
        Ok(Value::Array(items))
    }

    fn element(&mut self, field: &'a FieldDescription, depth: usize) -> Result<Value<'a>> {
        self.count_values(1)?;
        let start = self.pos;
        let fixed = |walker: &Self, width: u8| {
            if field.size == u64::from(width) {
                Ok(())
            } else {
                Err(VmdescError::BadFieldSize {
                    at: walker.location(start),
                    field_type: field.field_type.clone(),
                    size: field.size,
                    expected: u64::from(width),
                })
            }
        };
        match FieldKind::of(&field.field_type) {
            FieldKind::Uint(width) => {
                fixed(self, width)?;
                let value = self
                    .take(u64::from(width))?
                    .iter()
                    .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                Ok(Value::Uint {
                    bytes: width,
                    value,
                })
            }
            FieldKind::Int(width) => {
                fixed(self, width)?;
                let raw = self
                    .take(u64::from(width))?
                    .iter()
                    .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                let shift = 64 - u32::from(width) * 8;
                let value = ((raw << shift) as i64) >> shift;
                Ok(Value::Int {
                    bytes: width,
                    value,
                })
            }
            FieldKind::Bool => {
                fixed(self, 1)?;
                Ok(Value::Bool(self.take(1)?[0] != 0))
            }
            FieldKind::Nullptr => {
                fixed(self, 1)?;
                self.nullptr()
            }
            FieldKind::Capability => {
                let len = self.take(1)?[0];
                let name = self.take(u64::from(len))?;
                // Compressed arrays give the size of the first element only.
                if field.array_len.is_none() && field.size != 1 + u64::from(len) {
                    return Err(VmdescError::SizeMismatch {
                        at: self.location(start),
                        described: field.size,
                        walked: 1 + u64::from(len),
                    });
                }
                Ok(Value::Capability(name))
            }
            FieldKind::Struct => {
                let Some(nested) = field.struct_desc.as_deref() else {
                    return Err(VmdescError::BadStructDescription {
                        at: self.location(start),
                    });
                };
                if nested.vmsd_name.is_none() && nested.fields.is_empty() {
                    // QEMU 7.2 describes a NULL element of an array of struct pointers
                    // as an empty "struct" object of size 1: the placeholder byte.
                    if field.size == 1 && nested.subsections.is_empty() {
                        return self.nullptr();
                    }
                    return Err(VmdescError::BadStructDescription {
                        at: self.location(start),
                    });
                }
                self.nested(field, nested, depth)
            }
            FieldKind::InlineVmsd if field.inline.vmsd_name.is_some() => {
                self.nested(field, &field.inline, depth)
            }
            FieldKind::InlineVmsd | FieldKind::Opaque => Ok(Value::Buffer(self.take(field.size)?)),
        }
    }

    fn nullptr(&mut self) -> Result<Value<'a>> {
        let at = self.pos;
        let found = self.take(1)?[0];
        if found == NULLPTR_MARKER {
            Ok(Value::Nullptr)
        } else {
            Err(VmdescError::BadNullptrMarker {
                at: self.location(at),
                found,
            })
        }
    }

    fn nested(
        &mut self,
        field: &'a FieldDescription,
        nested: &'a VmsdDescription,
        depth: usize,
    ) -> Result<Value<'a>> {
        let start = self.pos;
        let state = self.vmsd(nested, depth + 1)?;
        let walked = (self.pos - start) as u64;
        if walked != field.size {
            return Err(VmdescError::SizeMismatch {
                at: self.location(start),
                described: field.size,
                walked,
            });
        }
        Ok(Value::Struct(state))
    }

    /// Reads the subsections after a vmsd's fields with QEMU's loader rule: while the next
    /// byte is 0x05 and the counted name after it starts with the parent's vmsd name (and
    /// is longer), it is a subsection; anything else ends the list.
    fn subsections(
        &mut self,
        desc: &'a VmsdDescription,
        depth: usize,
    ) -> Result<Vec<Subsection<'a>>> {
        let mut found = Vec::new();
        let Some(parent) = desc.vmsd_name.as_deref() else {
            return Ok(found);
        };
        let mut used = vec![false; desc.subsections.len()];
        while let Some(name) = self.peek_subsection(parent) {
            let at = self.pos;
            let Some(i) = (0..desc.subsections.len()).find(|&i| {
                !used[i]
                    && desc.subsections[i].vmsd_name.as_deref().map(str::as_bytes) == Some(name)
            }) else {
                return Err(VmdescError::UnknownSubsection {
                    at: self.location(at),
                    name: String::from_utf8_lossy(name).into_owned(),
                });
            };
            used[i] = true;
            let sub = &desc.subsections[i];
            let sub_name = sub.vmsd_name.as_deref().unwrap_or_default();
            self.path.push(Segment::Subsection(sub_name));
            self.pos += 2 + name.len();
            let version =
                u32::from_be_bytes(self.take(4)?.try_into().expect("take(4) returns 4 bytes"));
            if let Some(described) = sub.version {
                if described != u64::from(version) {
                    return Err(VmdescError::SubsectionVersionMismatch {
                        at: self.location(at),
                        name: sub_name.to_owned(),
                        described,
                        found: version,
                    });
                }
            }
            let state = self.vmsd(sub, depth + 1)?;
            self.path.pop();
            found.push(Subsection {
                name: sub_name,
                version,
                state,
            });
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(VmdescError::MissingSubsection {
                at: self.location(self.pos),
                name: desc.subsections[i].vmsd_name.clone().unwrap_or_default(),
            });
        }
        Ok(found)
    }

    /// The name of the subsection starting at the current position, if one does.
    fn peek_subsection(&self, parent: &str) -> Option<&'a [u8]> {
        let body: &'a [u8] = self.body;
        let rest = &body[self.pos..];
        let (&kind, rest) = rest.split_first()?;
        if kind != SectionType::SUBSECTION.0 {
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        let name = rest.get(..usize::from(len))?;
        (usize::from(len) > parent.len() && name.starts_with(parent.as_bytes())).then_some(name)
    }
}

/// Appends a decoded field, gathering array pieces that share a name (one entry per
/// element with `index`, or QEMU 10's segments split at null pointers) into one array.
fn push_field<'a>(
    fields: &mut Vec<(&'a str, Value<'a>)>,
    field: &'a FieldDescription,
    value: Value<'a>,
) {
    let array_piece = field.index.is_some() || field.array_len.is_some();
    if let Some((name, last)) = fields.last_mut() {
        if *name == field.name && (array_piece || matches!(last, Value::Array(_))) {
            let Value::Array(items) = last else {
                let first = core::mem::replace(last, Value::Array(Vec::new()));
                *last = Value::Array(vec![first]);
                return push_field(fields, field, value);
            };
            match value {
                Value::Array(more) if field.array_len.is_some() => items.extend(more),
                other => items.push(other),
            }
            return;
        }
    }
    let value = match value {
        v @ Value::Array(_) if field.array_len.is_some() => v,
        v if field.index.is_some() => Value::Array(vec![v]),
        v => v,
    };
    fields.push((&field.name, value));
}
