"""``python -m contracts``: rebuild the artifacts."""

from contracts.build import compile_all, write_artifacts

if __name__ == "__main__":
    artifacts, compiler = compile_all()
    for path in write_artifacts(artifacts):
        print(path)
    print(f"compiled with {compiler}")
