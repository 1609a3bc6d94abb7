"""Findings as the user reads them: one group per check and rule with a job count, errors first."""

from sc_unit import job
from snakemake_singcontain.findings import CODES, ERROR, NOTE, WARNING, Finding, group, has_errors, render


def f(code="SC401", severity=ERROR, rule="a", message="m", job=None, where=None):
    return Finding(code, severity, rule, message, "the fix", job, where)


def test_same_check_failing_for_many_jobs_of_a_rule_is_one_group():
    findings = [f(message=f"input /x/{i} is not visible", job=f"a[i={i}]") for i in range(5)]
    (g,) = group(findings)
    assert g.jobs == 5 and g.first is findings[0]
    text = render(findings)
    assert text.count("SC401") == 1 and "(and 4 more jobs of this rule)" in text and "job: a[i=0]" in text


def test_different_rules_or_codes_are_separate_groups():
    findings = [f(rule="a", job="a[1]"), f(rule="b", job="b[1]"), f(code="SC402", rule="a", job="a[2]")]
    assert [(g.first.code, g.first.rule, g.jobs) for g in group(findings)] == [
        ("SC401", "a", 1), ("SC402", "a", 1), ("SC401", "b", 1)]


def test_rule_level_findings_with_different_messages_stay_apart():
    findings = [f("SC301", message="bind source /a does not exist"), f("SC301", message="bind source /b does not exist"),
                f("SC301", message="bind source /a does not exist")]
    groups = group(findings)
    # Identical rule-level findings (no job) are one group, and one of them is no count of jobs.
    assert [(g.first.message, g.jobs) for g in groups] == [("bind source /a does not exist", 1),
                                                           ("bind source /b does not exist", 1)]
    assert "more jobs" not in render(findings)


def test_errors_before_warnings_before_notes():
    findings = [f("SC302", NOTE, "a"), f("SC404", WARNING, "a"), f("SC205", WARNING, "b"), f("SC301", ERROR, "z"),
                f("SC102", ERROR, "b")]
    assert [(g.first.severity, g.first.rule) for g in group(findings)] == [
        (ERROR, "b"), (ERROR, "z"), (WARNING, "a"), (WARNING, "b"), (NOTE, "a")]
    assert render(findings).splitlines()[0].startswith("error SC102 rule b:")


def test_render_shows_where_and_fix():
    text = render([f("SC301", message="bind source /a does not exist", where="defaults (p.yaml:4)")])
    assert text.splitlines() == ["error SC301 rule a: bind source /a does not exist", "    set at: defaults (p.yaml:4)",
                                 "    fix: the fix"]
    assert render([]) == ""


def test_has_errors():
    assert not has_errors([f(severity=WARNING), f(severity=NOTE)])
    assert has_errors([f(severity=WARNING), f()])
    assert not has_errors([])


def test_checker_findings_group_per_rule(site):
    site.dir("ref")
    c = site.checker("version: 1\ndefaults: {binds: ['${ROOT}/ref:ro', '${ROOT}/gone1', '${ROOT}/gone2']}\n",
                     rules=["a", "b"])
    jobs = [job("a", outputs=[site.path("ref", f"{i}.idx")], wildcards={"i": str(i)}) for i in range(50)]
    jobs += [job("b", outputs=[site.path("ref", "b.idx")])]
    groups = group(c.check(jobs))
    summary = [(g.first.code, g.first.rule, g.jobs) for g in groups]
    # SC301 once per rule and missing folder (rule-level), SC402 once per rule with a job count
    assert summary == [("SC301", "a", 1), ("SC301", "a", 1), ("SC402", "a", 50),
                       ("SC301", "b", 1), ("SC301", "b", 1), ("SC402", "b", 1)]


def test_job_count_counts_jobs_not_findings(site):
    c = site.checker("version: 1\ndefaults: {auto_binds: false}\n")
    findings = c.check([job("a", inputs=[site.path("x", "1"), site.path("y", "2")])])
    (g,) = group(findings)
    assert g.jobs == 1 and "more jobs" not in render(findings)
    findings = c.check([job("a", inputs=[site.path("x", "1"), site.path("y", "2")], wildcards={"i": str(i)})
                        for i in range(2)])
    (g,) = group(findings)
    assert len(findings) == 4 and g.jobs == 2 and "(and 1 more jobs of this rule)" in render(findings)


def test_every_code_is_documented_in_one_line():
    assert all(code[:2] == "SC" and len(code) == 5 and text and "\n" not in text for code, text in CODES.items())
