//! Explanations as data: every line of a decision's reasoning is a list of
//! [`Term`]s (text and the values it quotes), rendered to text only where
//! text is read — `--explain`, the warnings a response carries, a test —
//! never while sizing. A line that gives a resource's new value records
//! which resource it is and where its formula starts, so a warning quotes a
//! formula by looking it up, never by reading the text back.

use std::fmt;

use super::quantity::Quantity;
use crate::terms;

/// The map a resource field sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// A container's `resources.requests`.
    Requests,
    /// A container's `resources.limits`.
    Limits,
    /// A RuntimeClass's `overhead.podFixed`.
    PodFixed,
}

/// A resource field: the section and the resource name, and the container
/// where a Pod has several that are sized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceField {
    /// `requests`, `limits` or `podFixed`.
    pub section: Section,
    /// `cpu`, `memory`, `hugepages-2Mi`, …
    pub name: String,
    /// The container, as `containers[0]` or `initContainers[1]`; `None`
    /// where a decision sizes one container (a launcher's `compute`).
    pub container: Option<String>,
}

impl ResourceField {
    /// `name` in `section`.
    #[must_use]
    pub fn new(section: Section, name: &str) -> ResourceField {
        ResourceField {
            section,
            name: name.to_owned(),
            container: None,
        }
    }

    /// The same field in the container at `index` of the Pod spec's `list`
    /// (`containers`, `initContainers`).
    #[must_use]
    pub fn in_container(self, list: &str, index: impl fmt::Display) -> ResourceField {
        ResourceField {
            container: Some(format!("{list}[{index}]")),
            ..self
        }
    }

    /// Whether a formula written for `self` explains `field`: the same
    /// section and name, and the same container when `self` names one.
    fn explains(&self, field: &ResourceField) -> bool {
        self.section == field.section
            && self.name == field.name
            && (self.container.is_none() || self.container == field.container)
    }
}

/// One piece of a line: fixed text, or a value shown as Kubernetes and
/// KubeVirt write it, formatted only when the line is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// Text fixed in the code.
    Text(&'static str),
    /// Text read from an object or a policy (a name, a label's value).
    Owned(String),
    /// A quantity, in its own format (`1292Mi`, `600m`).
    Quantity(Quantity),
    /// An integer (vCPUs, a percentage, MiB).
    Integer(i128),
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Text(text) => f.write_str(text),
            Term::Owned(text) => f.write_str(text),
            Term::Quantity(quantity) => fmt::Display::fmt(quantity, f),
            Term::Integer(integer) => fmt::Display::fmt(integer, f),
        }
    }
}

/// Terms in order: a line, the head or formula of one, or a part of either.
/// Build them with [`terms!`](crate::terms).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Terms(Vec<Term>);

impl Terms {
    /// No terms.
    #[must_use]
    pub const fn new() -> Terms {
        Terms(Vec::new())
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// No terms, with room for `capacity` (a part that is more terms may
    /// need more).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Terms {
        Terms(Vec::with_capacity(capacity))
    }

    /// Appends `part` (a text, a quantity, an integer or more terms).
    pub fn push(&mut self, part: impl IntoTerms) {
        part.append_to(self);
    }

    /// `parts`, with `separator` between each two.
    pub fn joined(parts: impl IntoIterator<Item = Terms>, separator: &'static str) -> Terms {
        let mut joined = Terms::new();
        for (index, part) in parts.into_iter().enumerate() {
            if index > 0 {
                joined.push(separator);
            }
            joined.push(part);
        }
        joined
    }
}

impl fmt::Display for Terms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Shown(&self.0).fmt(f)
    }
}

impl From<&'static str> for Terms {
    fn from(text: &'static str) -> Terms {
        terms![text]
    }
}

/// A run of terms, shown one after another.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(&'a [Term]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|term| term.fmt(f))
    }
}

/// What can be a part of [`Terms`].
pub trait IntoTerms {
    /// Appends itself to `terms`.
    fn append_to(self, terms: &mut Terms);
}

impl IntoTerms for &'static str {
    fn append_to(self, terms: &mut Terms) {
        if !self.is_empty() {
            terms.0.push(Term::Text(self));
        }
    }
}

impl IntoTerms for String {
    fn append_to(self, terms: &mut Terms) {
        if !self.is_empty() {
            terms.0.push(Term::Owned(self));
        }
    }
}

impl IntoTerms for Quantity {
    fn append_to(self, terms: &mut Terms) {
        terms.0.push(Term::Quantity(self));
    }
}

impl IntoTerms for &Quantity {
    fn append_to(self, terms: &mut Terms) {
        terms.0.push(Term::Quantity(*self));
    }
}

macro_rules! integer_terms {
    ($($integer:ty),*) => {$(
        impl IntoTerms for $integer {
            fn append_to(self, terms: &mut Terms) {
                terms.0.push(Term::Integer(i128::from(self)));
            }
        }
    )*};
}
integer_terms!(u8, u16, u32, u64, i32, i64, i128);

impl IntoTerms for Terms {
    fn append_to(self, terms: &mut Terms) {
        terms.0.extend(self.0);
    }
}

impl<T: IntoTerms> IntoTerms for Option<T> {
    fn append_to(self, terms: &mut Terms) {
        if let Some(part) = self {
            part.append_to(terms);
        }
    }
}

/// [`Terms`] from parts in order: `terms!["cpu request ", computed, " = ",
/// vcpus, " vCPU"]`. A part is a `&'static str`, a `String`, a
/// [`Quantity`], an integer, an `Option` of one, or more `Terms`.
#[macro_export]
macro_rules! terms {
    ($($part:expr),* $(,)?) => {{
        #[allow(unused_mut, reason = "terms![] is empty")]
        let mut terms =
            $crate::sizing::explain::Terms::with_capacity(<[&str]>::len(&[$(stringify!($part)),*]));
        $(terms.push($part);)*
        terms
    }};
}

/// One line: its terms, and for a formula line the field it gives and the
/// term its formula starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    terms: Terms,
    formula: Option<(ResourceField, usize)>,
}

/// The lines of an explanation, and the formulas among them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Explanation {
    lines: Vec<Line>,
}

impl Explanation {
    /// No lines.
    #[must_use]
    pub fn new() -> Explanation {
        Explanation::default()
    }

    /// A line that gives no resource's value.
    pub fn note(&mut self, line: Terms) {
        self.lines.push(Line {
            terms: line,
            formula: None,
        });
    }

    /// A line `head` + `separator` + `formula` giving `field`'s value, e.g.
    /// `memory request 986Mi` ` = ` `guest 1Gi × 100/150 + overhead 268Mi`.
    pub fn formula(
        &mut self,
        field: ResourceField,
        head: Terms,
        separator: &'static str,
        formula: Terms,
    ) {
        let mut terms = head;
        terms.push(separator);
        let start = terms.0.len();
        terms.push(formula);
        self.lines.push(Line {
            terms,
            formula: Some((field, start)),
        });
    }

    /// The first formula written for `field` (one written without a
    /// container explains the field in any container).
    #[must_use]
    pub fn formula_for(&self, field: &ResourceField) -> Option<Shown<'_>> {
        self.lines.iter().find_map(|line| match &line.formula {
            Some((written, start)) if written.explains(field) => {
                line.terms.0.get(*start..).map(Shown)
            }
            _ => None,
        })
    }

    /// How many lines there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines, each shown as text when it is formatted.
    pub fn iter(&self) -> impl Iterator<Item = &Terms> {
        self.into_iter()
    }

    /// The lines as text, in order.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.iter().map(ToString::to_string).collect()
    }

    /// Appends `other`'s lines and formulas.
    pub fn append(&mut self, other: Explanation) {
        self.lines.extend(other.lines);
    }
}

impl<'a> IntoIterator for &'a Explanation {
    type Item = &'a Terms;
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Line>, fn(&'a Line) -> &'a Terms>;

    /// The lines, each shown as text when it is formatted.
    fn into_iter(self) -> Self::IntoIter {
        self.lines.iter().map(|line| &line.terms)
    }
}

impl From<Terms> for Explanation {
    /// One note.
    fn from(line: Terms) -> Explanation {
        let mut explanation = Explanation::new();
        explanation.note(line);
        explanation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formula_is_found_by_its_field_and_the_first_one_wins() {
        let memory = ResourceField::new(Section::Requests, "memory");
        let (gib, mib) = (
            Quantity::parse("1Gi").unwrap(),
            Quantity::parse("268Mi").unwrap(),
        );
        let mut explanation = Explanation::new();
        explanation.note(terms!["VMI ns/vm: ", 1_u32, " vCPU"]);
        explanation.formula(
            memory.clone(),
            terms!["memory request ", Quantity::parse("986Mi").unwrap()],
            " = ",
            terms!["guest ", gib, " × 100/", 150_u32, " + overhead ", mib],
        );
        explanation.formula(
            memory.clone(),
            terms!["memory request ", gib],
            " = ",
            terms!["later"],
        );
        explanation.append(Explanation::from(terms![]));
        let mut more = Explanation::new();
        more.formula(
            ResourceField::new(Section::PodFixed, "cpu"),
            terms!["cpu ", Quantity::parse("250m").unwrap()],
            " = ",
            terms![
                "vmm ",
                Some(Quantity::parse("250m").unwrap()),
                None::<&'static str>
            ],
        );
        explanation.append(more);
        let formula = |field: &ResourceField| {
            explanation
                .formula_for(field)
                .map(|shown| shown.to_string())
        };
        assert_eq!(
            formula(&memory).as_deref(),
            Some("guest 1Gi × 100/150 + overhead 268Mi")
        );
        assert_eq!(
            formula(&ResourceField::new(Section::PodFixed, "cpu")).as_deref(),
            Some("vmm 250m")
        );
        assert_eq!(
            formula(&ResourceField::new(Section::Limits, "memory")),
            None
        );
        assert_eq!(
            explanation.lines(),
            [
                "VMI ns/vm: 1 vCPU",
                "memory request 986Mi = guest 1Gi × 100/150 + overhead 268Mi",
                "memory request 1Gi = later",
                "",
                "cpu 250m = vmm 250m"
            ]
        );
    }

    /// A Kata Pod's fields are told apart by container; a formula written
    /// without one (a launcher's `compute`) explains the field anywhere.
    #[test]
    fn formulas_for_a_container_explain_only_that_container() {
        let mut explanation = Explanation::new();
        let limit = |list: &str, index: usize| {
            ResourceField::new(Section::Limits, "memory").in_container(list, index)
        };
        explanation.formula(limit("containers", 0), terms!["a"], " = ", terms!["first"]);
        explanation.formula(
            limit("initContainers", 0),
            terms!["b"],
            " = ",
            terms!["init"],
        );
        explanation.formula(
            ResourceField::new(Section::Requests, "cpu"),
            terms!["c"],
            " = ",
            terms!["any"],
        );
        let formula = |field: &ResourceField| {
            explanation
                .formula_for(field)
                .map(|shown| shown.to_string())
        };
        assert_eq!(formula(&limit("containers", 0)).as_deref(), Some("first"));
        assert_eq!(
            formula(&limit("initContainers", 0)).as_deref(),
            Some("init")
        );
        assert_eq!(formula(&limit("containers", 1)), None);
        let cpu = ResourceField::new(Section::Requests, "cpu").in_container("containers", 3);
        assert_eq!(formula(&cpu).as_deref(), Some("any"));
    }

    #[test]
    fn joined_terms_put_the_separator_between_parts_only() {
        let parts = ["a", "b", "c"].map(|part| terms![part]);
        assert_eq!(Terms::joined(parts, " + ").to_string(), "a + b + c");
        assert_eq!(Terms::joined([], " + ").to_string(), "");
        assert!(Terms::joined([], " + ").is_empty());
    }
}
