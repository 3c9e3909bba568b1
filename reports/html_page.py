"""The run report's HTML: one self-contained page (inline CSS, images as data URIs), all text escaped."""

from __future__ import annotations

import jinja2

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ pipeline_name }} run {{ run_id }}</title>
<style>
  body { font-family: system-ui, sans-serif; color: #222; max-width: 1060px; margin: 0 auto; padding: 16px; }
  h1 { font-size: 1.4rem; margin-bottom: 4px; }
  h2 { font-size: 1.15rem; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
  .sub { color: #555; margin-top: 0; }
  table { border-collapse: collapse; font-size: .9rem; }
  th, td { text-align: left; padding: 3px 10px 3px 0; vertical-align: top; }
  th { color: #555; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  code { font-size: .85rem; word-break: break-all; }
  .COMPLETE, .CACHED, .blessed { color: #1b7a3e; font-weight: 600; }
  .FAILED, .notblessed { color: #b00020; font-weight: 600; }
  figure { margin: 12px 0 20px; }
  figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
  figcaption { color: #555; font-size: .9rem; }
  .missing { color: #8a6d00; }
</style>
</head>
<body>
<h1>{{ pipeline_name }}: run {{ run_id }}</h1>
<p class="sub">Report written {{ generated }} from <code>{{ metadata_path }}</code></p>

<h2>Result</h2>
<table id="result">
  <tr><th>test accuracy</th><td>{{ "%.4f"|format(accuracy) if accuracy is not none else "not evaluated" }}</td></tr>
  <tr><th>blessing</th><td id="blessing" class="{{ 'blessed' if blessed else 'notblessed' }}">{{ blessing }}</td></tr>
  <tr><th>infra validation</th><td id="infra-validation" class="{{ 'blessed' if infra and infra.blessed else 'notblessed' }}">{{ infra.describe() if infra else "no InfraValidator result" }}</td></tr>
  <tr><th>pushed version</th><td id="pushed-version">{{ pushed_version if pushed_version is not none else "nothing pushed" }}</td></tr>
  <tr><th>pushed path</th><td id="pushed-path"><code>{{ pushed_path or "" }}</code></td></tr>
</table>

<h2>Components</h2>
<table id="components">
  <tr><th>component</th><th>result</th><th>duration</th><th>execution</th></tr>
  {% for node in nodes %}
  <tr data-node="{{ node.node_id }}"><td>{{ node.node_id }}</td><td class="{{ node.state }}">{{ node.state }}</td>
      <td class="num">{{ "%.1f"|format(node.seconds) }} s</td><td class="num">{{ node.execution_id }}</td></tr>
  {% endfor %}
</table>

<h2>Lineage of the pushed model</h2>
{% if lineage %}
<p>Model artifact {{ lineage.model.artifact_id }}: <code class="uri">{{ lineage.model.uri }}</code></p>
<p>Trained on data <span id="spans">{% if not lineage.spans %}of no recorded span{% elif lineage.spans == [0] %}without spans (the four IDX files){% else %}span{{ "s" if lineage.spans|length > 1 }} {{ lineage.spans|join(", ") }}{% endif %}</span></p>
<table id="lineage">
  <tr><th>execution</th><th>component</th><th>result</th><th>inputs</th></tr>
  {% for step in lineage.steps %}
  <tr><td class="num">{{ step.execution_id }}</td><td>{{ step.node_id }}</td><td class="{{ step.state }}">{{ step.state }}</td>
      <td>{% for a in step.inputs %}<div>{{ a.keys|join(', ') }} ({{ a.type }} {{ a.artifact_id }}{% if a.span is not none %}, span {{ a.span }}{% endif %}{% if a.producer_id is not none %}, from execution {{ a.producer_id }}{% endif %}): <code class="uri">{{ a.uri }}</code></div>{% else %}none{% endfor %}</td></tr>
  {% endfor %}
</table>
{% else %}
<p class="missing">Nothing was pushed in this run.</p>
{% endif %}

<h2>Pictures</h2>
{% for f in figures %}
<figure id="{{ f.name }}">
  <img src="data:image/png;base64,{{ f.base64 }}" width="{{ f.width }}" height="{{ f.height }}" alt="{{ f.title }}">
  <figcaption><b>{{ f.title }}.</b> {{ f.caption }}</figcaption>
</figure>
{% endfor %}
{% for name, reason in missing %}
<p class="missing">{{ name }}: not available ({{ reason }})</p>
{% endfor %}
</body>
</html>
"""

_ENVIRONMENT = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def render(**context: object) -> str:
    """The page for the given facts (see the template for the names it needs)."""
    return _ENVIRONMENT.from_string(_TEMPLATE).render(**context)
