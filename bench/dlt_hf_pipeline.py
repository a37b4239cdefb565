"""The dlt side of bench/hf_sync_bench.py --dlt: the same Hugging Face listing, loaded by a dlt
`rest_api` source (HeaderLinkPaginator follows `Link: <...>; rel="next"`) into PostgreSQL.

Run by bench/.venv/bin/python (the benchmark installs `dlt[postgres]` there). Writes the time
of each pipeline step to --result as JSON; the caller counts the rows.

Choices, to compare like with like: `max_table_nesting=0` keeps `tags` as a JSON column of the
one table (as model-lens-sync keeps the raw record as jsonb) instead of a child table of tags;
`append`, no primary key or merge; the default postgres loader file format (insert_values).
"""

import argparse
import json
import time
import urllib.parse

import dlt
from dlt.sources.helpers.rest_client.paginators import HeaderLinkPaginator
from dlt.sources.rest_api import rest_api_source


def with_password(database_url: str) -> str:
    """dlt insists on a password; a trust-auth cluster ignores it, so add a dummy one."""
    url = urllib.parse.urlsplit(database_url)
    if url.password or "@" not in url.netloc:
        return database_url
    user, host = url.netloc.rsplit("@", 1)
    return urllib.parse.urlunsplit(url._replace(netloc=f"{user}:unused@{host}"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default="dlt_bench")
    parser.add_argument("--pipelines-dir", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args()

    began = time.perf_counter()
    source = rest_api_source(
        {
            "client": {"base_url": args.base_url, "paginator": HeaderLinkPaginator()},
            "resource_defaults": {"write_disposition": "append"},
            "resources": [
                {
                    "name": "hf_models",
                    "endpoint": {
                        "path": "api/models",
                        "params": {"sort": "downloads", "direction": -1, "limit": 1000},
                    },
                }
            ],
        },
        max_table_nesting=0,
    )
    pipeline = dlt.pipeline(
        pipeline_name="hf_sync_bench",
        pipelines_dir=args.pipelines_dir,
        destination=dlt.destinations.postgres(credentials=with_password(args.database_url)),
        dataset_name=args.schema,
    )
    steps = {}
    mark = time.perf_counter()
    pipeline.extract(source)
    steps["extract_seconds"] = time.perf_counter() - mark
    mark = time.perf_counter()
    pipeline.normalize()
    steps["normalize_seconds"] = time.perf_counter() - mark
    mark = time.perf_counter()
    pipeline.load()
    steps["load_seconds"] = time.perf_counter() - mark
    steps["pipeline_seconds"] = time.perf_counter() - began
    with open(args.result, "w") as out:
        json.dump(steps, out)


if __name__ == "__main__":
    main()
