#!/usr/bin/env bash
# The software bill of materials of one built image, written beside the lock file's entry:
#   build/sbom/NAME.dpkg.tsv   the Debian packages (dpkg-query: package, version, architecture)
#   build/sbom/NAME.cdx.json   CycloneDX of the Python packages of the image's /opt/venv, made by the
#                              CycloneDX project's own tool (cyclonedx-py) from the venv's package list;
#                              images without a Python environment (SeaweedFS, PostgreSQL) have none.
# Each container runs without network. Usage: docker/sbom.sh NAME REF CYCLONEDX_PY
set -uo pipefail
NAME="${1:?usage: docker/sbom.sh NAME REF CYCLONEDX_PY}"
REF="${2:?usage: docker/sbom.sh NAME REF CYCLONEDX_PY}"
CYCLONEDX="${3:?usage: docker/sbom.sh NAME REF CYCLONEDX_PY}"
OUT="${SBOM_DIR:-build/sbom}"
mkdir -p "$OUT"
if ! docker run --rm --network none --user 0 --entrypoint dpkg-query "$REF" \
    -W -f '${Package}\t${Version}\t${Architecture}\n' > "$OUT/$NAME.dpkg.tsv"; then
    echo "sbom: dpkg-query failed in $REF"
    exit 2
fi
rm -f "$OUT/$NAME.cdx.json" "$OUT/$NAME.requirements.txt"
if docker run --rm --network none --entrypoint /bin/sh "$REF" -c 'test -x /opt/venv/bin/python'; then
    # `pip list --format=freeze`: name==version for every package, lumbar itself included (pip freeze would
    # name it by its build folder, without a version)
    docker run --rm --network none --entrypoint /opt/venv/bin/python "$REF" -m pip list --format=freeze \
        > "$OUT/$NAME.requirements.txt" || { echo "sbom: pip list failed in $REF"; exit 2; }
    "$CYCLONEDX" requirements --of JSON --output-reproducible -o "$OUT/$NAME.cdx.json" \
        "$OUT/$NAME.requirements.txt" >/dev/null || { echo "sbom: cyclonedx-py failed for $REF"; exit 2; }
fi
echo "sbom: $NAME: $(wc -l < "$OUT/$NAME.dpkg.tsv") Debian packages$( [ -f "$OUT/$NAME.cdx.json" ] && \
    echo ", $(grep -c . "$OUT/$NAME.requirements.txt") Python packages (CycloneDX)")"
