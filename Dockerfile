# Image of the pipeline for docker-compose: Airflow 3.3 with lienthong installed from this repository.
FROM apache/airflow:3.3.2-python3.11
USER root
COPY --chown=airflow:root . /opt/lienthong
# the simulated sources' volume of docker-compose.yml: owned by the Airflow user (group 0, as the image's files)
RUN mkdir -p /srv/lienthong/sim && chown -R airflow:0 /srv/lienthong && chmod -R g+rwX /srv/lienthong
USER airflow
RUN pip install --no-cache-dir -c /opt/lienthong/constraints.txt -e "/opt/lienthong[cluster]"
ENV PYTHONPATH=/opt/lienthong
