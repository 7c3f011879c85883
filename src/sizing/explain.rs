//! Explanations as data: every line of a decision's reasoning, and for a
//! line that gives a resource's new value, which resource it is and where
//! its formula starts. A warning quotes a formula by looking it up, never by
//! reading the text back.

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

/// A resource field: the section and the resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceField {
    /// `requests`, `limits` or `podFixed`.
    pub section: Section,
    /// `cpu`, `memory`, `hugepages-2Mi`, …
    pub name: String,
}

impl ResourceField {
    /// `name` in `section`.
    #[must_use]
    pub fn new(section: Section, name: &str) -> ResourceField {
        ResourceField {
            section,
            name: name.to_owned(),
        }
    }
}

/// The lines of an explanation, and the formulas among them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Explanation {
    lines: Vec<String>,
    /// For each formula: the field, its line, and the byte where the
    /// formula starts in that line; in the order written.
    formulas: Vec<(ResourceField, usize, usize)>,
}

impl Explanation {
    /// No lines.
    #[must_use]
    pub fn new() -> Explanation {
        Explanation::default()
    }

    /// A line that gives no resource's value.
    pub fn note(&mut self, line: String) {
        self.lines.push(line);
    }

    /// A line `head` + `separator` + `formula` giving `field`'s value, e.g.
    /// `memory request 986Mi` ` = ` `guest 1Gi × 100/150 + overhead 268Mi`.
    pub fn formula(&mut self, field: ResourceField, head: &str, separator: &str, formula: &str) {
        let start = head.len() + separator.len();
        self.formulas.push((field, self.lines.len(), start));
        self.lines.push(format!("{head}{separator}{formula}"));
    }

    /// The first formula written for `field`.
    #[must_use]
    pub fn formula_for(&self, field: &ResourceField) -> Option<&str> {
        self.formulas
            .iter()
            .find(|(written, _, _)| written == field)
            .and_then(|(_, line, start)| self.lines.get(*line)?.get(*start..))
    }

    /// The lines, in order.
    #[must_use]
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The lines, in order.
    #[must_use]
    pub fn into_lines(self) -> Vec<String> {
        self.lines
    }

    /// Appends `other`'s lines and formulas.
    pub fn append(&mut self, other: Explanation) {
        let offset = self.lines.len();
        self.formulas.extend(
            other
                .formulas
                .into_iter()
                .map(|(field, line, start)| (field, line + offset, start)),
        );
        self.lines.extend(other.lines);
    }
}

impl std::ops::Deref for Explanation {
    type Target = [String];

    /// The lines, in order.
    fn deref(&self) -> &[String] {
        &self.lines
    }
}

impl From<Vec<String>> for Explanation {
    /// Notes only.
    fn from(lines: Vec<String>) -> Explanation {
        Explanation {
            lines,
            formulas: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formula_is_found_by_its_field_and_the_first_one_wins() {
        let memory = ResourceField::new(Section::Requests, "memory");
        let mut explanation = Explanation::new();
        explanation.note("VMI ns/vm: 1 vCPU".to_owned());
        explanation.formula(
            memory.clone(),
            "memory request 986Mi",
            " = ",
            "guest 1Gi × 100/150 + overhead 268Mi",
        );
        explanation.formula(memory.clone(), "memory request 1Gi", " = ", "later");
        let mut more = Explanation::new();
        more.formula(
            ResourceField::new(Section::PodFixed, "cpu"),
            "cpu 250m",
            " = ",
            "vmm 250m",
        );
        explanation.append(more);
        assert_eq!(
            explanation.formula_for(&memory),
            Some("guest 1Gi × 100/150 + overhead 268Mi")
        );
        assert_eq!(
            explanation.formula_for(&ResourceField::new(Section::PodFixed, "cpu")),
            Some("vmm 250m")
        );
        assert_eq!(
            explanation.formula_for(&ResourceField::new(Section::Limits, "memory")),
            None
        );
        assert_eq!(
            explanation.lines(),
            [
                "VMI ns/vm: 1 vCPU",
                "memory request 986Mi = guest 1Gi × 100/150 + overhead 268Mi",
                "memory request 1Gi = later",
                "cpu 250m = vmm 250m"
            ]
        );
    }
}
