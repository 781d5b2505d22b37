"""Map extraction on a local Ray cluster of 1, 2 and 4 worker processes against one process,
on this machine: Gardens Point day_right (200 images), MobileNetV2 + GeM fp32 (shared weights,
short side 360), the map's own model file. Wall time includes Ray's start-up and each
worker's first import of torch, as a build pays them; images per second are over the whole
extraction.

    python benchmarks/ray_map_build.py [--workers 1,2,4] [--out benchmarks/results/ray_map_build.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from quantization_gardens_point import model_overrides

import edgevpr
from edgevpr.atomic import write_json
from edgevpr.data.images import list_images
from edgevpr.evaluate.environment import environment
from edgevpr.maps.ray_extract import extract_on_ray

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--out", default=str(HERE / "results" / "ray_map_build.json"))
    args = parser.parse_args()
    import ray

    shared = Path(args.shared)
    paths = list_images(shared / "data" / "gardens_point" / "day_right")
    config = edgevpr.load_config(overrides={"model": model_overrides("mnv2_gem", shared), "data": {"resize": 360}})
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        built = edgevpr.Map.build(edgevpr.ModelSource(config=config), paths[0].parent, Path(folder) / "map")
        single = time.perf_counter() - start
        model_part = Path(folder) / "map" / built.manifest["model"]["file"]
        rows = {"single_process": {"seconds": round(single, 1), "images_per_s": round(len(paths) / single, 1)}}
        print(rows, flush=True)
        for workers in (int(w) for w in args.workers.split(",")):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            start = time.perf_counter()
            descriptors, _ = extract_on_ray(model_part, "checkpoint", paths, 16, 10**8)
            seconds = time.perf_counter() - start
            ray.shutdown()
            same = bool(np.allclose(descriptors, np.asarray(built.descriptors), atol=1e-5))
            rows[f"ray_{workers}"] = {
                "seconds": round(seconds, 1),
                "images_per_s": round(len(paths) / seconds, 1),
                "same_descriptors": same,
            }
            print(workers, rows[f"ray_{workers}"], flush=True)
    write_json(args.out, {"images": len(paths), "rows": rows, "environment": environment()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
