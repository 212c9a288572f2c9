#!/bin/sh
# Entrypoint of the MLflow server container: writes MLflow's basic-auth config file from the environment, so that
# no password sits in a committed file or on a command line, then runs the given command (`mlflow server ...`).
#
#   MLFLOW_AUTH_CONFIG_PATH         where to write the file (compose puts it on a tmpfs)
#   MLFLOW_ADMIN_USERNAME           admin user created on the first start (default: admin)
#   MLFLOW_ADMIN_PASSWORD           its password, at least 12 characters; only read while that user does not exist
#   MLFLOW_AUTH_DATABASE_URI        where users and permissions are stored
#   MLFLOW_AUTH_DEFAULT_PERMISSION  what a user may do on resources they were given no permission for (default: READ)
set -eu

: "${MLFLOW_AUTH_CONFIG_PATH:?must name the file to write MLflow's auth config to}"
: "${MLFLOW_ADMIN_PASSWORD:?must be set (the MLflow admin password, at least 12 characters)}"
: "${MLFLOW_AUTH_DATABASE_URI:?must be set (the database MLflow keeps users and permissions in)}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?must be set (a random string; the auth app refuses to start without it)}"

case "$MLFLOW_ADMIN_PASSWORD" in
*"
"*)
    echo "mlflow-entrypoint: MLFLOW_ADMIN_PASSWORD must be a single line" >&2
    exit 2
    ;;
esac

# configparser interpolates '%': write it as '%%' so that any password is read back as given.
ini_escape() {
    printf '%s' "$1" | sed 's/%/%%/g'
}

umask 077
mkdir -p "$(dirname "$MLFLOW_AUTH_CONFIG_PATH")"
{
    printf '%s\n' "[mlflow]"
    printf 'default_permission = %s\n' "${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}"
    printf 'database_uri = %s\n' "$(ini_escape "$MLFLOW_AUTH_DATABASE_URI")"
    printf 'admin_username = %s\n' "$(ini_escape "${MLFLOW_ADMIN_USERNAME:-admin}")"
    printf 'admin_password = %s\n' "$(ini_escape "$MLFLOW_ADMIN_PASSWORD")"
    printf '%s\n' "authorization_function = mlflow.server.auth:authenticate_request_basic_auth"
} >"$MLFLOW_AUTH_CONFIG_PATH"

# The file holds the password now; keep it out of the server's environment.
unset MLFLOW_ADMIN_PASSWORD
exec "$@"
