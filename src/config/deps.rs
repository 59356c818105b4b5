//! Dependency order (`depends_on`): finding a cycle, which no order can satisfy.
//!
//! Checked wherever a set of definitions is about to take effect (an ecosystem file as it is read, an app
//! created or a file applied against the apps the daemon already has), and once more over the lanes of every
//! rollout, which then go in parallel rather than wait on each other forever.

use std::collections::BTreeMap;

/// A cycle in a graph of `app -> the apps it needs`, as the path that closes it (`["a", "b", "a"]`), or
/// `None`. Names that are not keys (apps outside the graph) end a path. Deterministic: the first cycle found
/// walking the apps in name order.
pub fn find_cycle(graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = graph.keys().map(|k| (k.as_str(), Mark::New)).collect();
    for start in graph.keys() {
        if marks.get(start.as_str()) != Some(&Mark::New) {
            continue;
        }
        // An explicit stack of (app, index of the next need to look at): no recursion on user input.
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start.as_str(), Mark::OnPath);
        while let Some((app, next)) = path.last_mut() {
            let needs = graph.get(*app).map_or(&[][..], Vec::as_slice);
            let Some(need) = needs.get(*next) else {
                marks.insert(app, Mark::Done);
                path.pop();
                continue;
            };
            *next += 1;
            match marks.get(need.as_str()) {
                Some(Mark::New) => {
                    marks.insert(need.as_str(), Mark::OnPath);
                    path.push((need.as_str(), 0));
                }
                Some(Mark::OnPath) => {
                    let from = path.iter().position(|(a, _)| *a == need.as_str())?;
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|(a, _)| a.to_string()).collect();
                    cycle.push(need.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) | None => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(a, needs)| (a.to_string(), needs.iter().map(|n| n.to_string()).collect()))
            .collect()
    }

    #[test]
    fn no_cycle_in_a_chain_a_diamond_or_with_outside_names() {
        assert_eq!(
            find_cycle(&graph(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])),
            None
        );
        let diamond = graph(&[("a", &["b", "c"]), ("b", &["d"]), ("c", &["d"]), ("d", &[])]);
        assert_eq!(find_cycle(&diamond), None);
        assert_eq!(find_cycle(&graph(&[("a", &["elsewhere"])])), None);
        assert_eq!(find_cycle(&BTreeMap::new()), None);
    }

    #[test]
    fn a_cycle_is_named_as_the_path_that_closes_it() {
        let two = graph(&[("a", &["b"]), ("b", &["a"])]);
        assert_eq!(
            find_cycle(&two),
            Some(vec!["a".into(), "b".into(), "a".into()])
        );
        let three = graph(&[("web", &["api"]), ("api", &["db"]), ("db", &["api"])]);
        assert_eq!(
            find_cycle(&three),
            Some(vec!["api".into(), "db".into(), "api".into()])
        );
        let own = graph(&[("x", &["x"])]);
        assert_eq!(find_cycle(&own), Some(vec!["x".into(), "x".into()]));
    }

    #[test]
    fn a_long_chain_needs_no_deep_recursion() {
        let n = 100_000;
        let mut g: BTreeMap<String, Vec<String>> = (0..n)
            .map(|i| (format!("a{i}"), vec![format!("a{}", i + 1)]))
            .collect();
        assert_eq!(find_cycle(&g), None);
        g.insert(format!("a{n}"), vec!["a0".into()]);
        assert_eq!(find_cycle(&g).map(|c| c.len()), Some(n + 2));
    }
}
