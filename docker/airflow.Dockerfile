# Airflow image for the marketing pipeline: Airflow 3.3.2 + Java 17 (Spark 4) + the project.
# Built by docker-compose.yaml (context: the repository root).
#
# Dependency policy: requirements.lock is the constraint set. It is a full, uv-compiled lock
# that already pins apache-airflow==3.3.2 and every transitive dependency, so it is installed
# as-is instead of layering Airflow's published constraints file on top (the two pin sets
# disagree on some packages, e.g. SQLAlchemy, and pip would refuse the combination). Airflow
# is named again in the same pip command so nothing can move it off the base image's version.
# psycopg2 and asyncpg (metadata DB drivers) are not in the lock: they come with the base image.
FROM apache/airflow:3.3.2-python3.11

USER root
# Spark 4 needs Java 17. /usr/share/man/man1 must exist for the JRE's postinst on slim Debian.
RUN set -eux; \
    mkdir -p /usr/share/man/man1; \
    apt-get update; \
    apt-get install -y --no-install-recommends openjdk-17-jre-headless; \
    apt-get autoremove -yqq --purge; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    ln -sfn "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/java-17; \
    mkdir -p /opt/airflow/project /opt/airflow/auth; \
    chown -R airflow:0 /opt/airflow/project /opt/airflow/auth; \
    chmod 0770 /opt/airflow/auth
ENV JAVA_HOME=/usr/lib/jvm/java-17

USER airflow
WORKDIR /opt/airflow/project

COPY --chown=airflow:0 requirements.lock ./
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r requirements.lock \
    && python -c "import psycopg2, asyncpg, pyspark" \
    && java -version

# S3A support for Spark (the lake is s3:// in this stack; jobs/platform/lake.py hands Spark s3a:// URIs).
# hadoop-aws must match the Hadoop that pyspark bundles, so its version is read from the wheel;
# Ivy resolves the matching AWS SDK bundle, and the jars go onto pyspark's own classpath.
RUN set -eux; \
    jars="$(python -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"; \
    hadoop_version="$(ls "$jars" | sed -n 's/^hadoop-client-api-\(.*\)\.jar$/\1/p')"; \
    test -n "$hadoop_version"; \
    python -c "from pyspark.sql import SparkSession; SparkSession.builder.master('local[1]').config('spark.jars.packages', 'org.apache.hadoop:hadoop-aws:${hadoop_version}').config('spark.jars.ivy', '/tmp/ivy').getOrCreate().stop()"; \
    cp /tmp/ivy/jars/*.jar "$jars"/; \
    rm -rf /tmp/ivy "$HOME/.ivy2" "$HOME/.ivy2.5.2"; \
    ls "$jars" | grep -q '^org.apache.hadoop_hadoop-aws-'

# The project itself. Editable install keeps jobs.platform.config.PROJECT_ROOT at /opt/airflow/project,
# so config/, data_contracts/ and sql/ (baked in here, bind-mounted by compose) are found.
COPY --chown=airflow:0 pyproject.toml README* ./
COPY --chown=airflow:0 jobs ./jobs
COPY --chown=airflow:0 models ./models
COPY --chown=airflow:0 config ./config
COPY --chown=airflow:0 data_contracts ./data_contracts
COPY --chown=airflow:0 sql ./sql
COPY --chown=airflow:0 dags /opt/airflow/dags
RUN pip install --no-cache-dir --no-deps -e . \
    && python -c "import jobs, models" \
    && command -v marketing

ENV MKT_CONFIG=/opt/airflow/project/config/pipeline.yaml
