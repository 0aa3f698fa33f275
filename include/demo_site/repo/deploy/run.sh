#!/bin/sh
# Start the pump on the old worker box. This script used to be the box's .env file.
set -eu
export GITHUB_TOKEN=ghp_R8mZ2kQ7wX4nV1bT9cL5yH3pF6sJ0dA2gE8u
export DB_PASSWORD=FocsleLantern42
export PUMP_ALERT_PHONE="(202) 555-0178"
cat > "$HOME/.ssh/pump_deploy" <<'KEY'
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBq8XhS3pG2kLmN4vR7tY9wZ1aB5cD6eF8gH0iJ2kL3mAAAAJhTWp0rU1qd
KwAAAAtzc2gtZWQyNTUxOQAAACBq8XhS3pG2kLmN4vR7tY9wZ1aB5cD6eF8gH0iJ2kL3mA
AAAECvQ2w7Xz9Yb4Nc1Md8Pe5Rf3Sg6Th0Ui2Vj9Wk4Xl7Ym1q8XhS3pG2kLmN4vR7tY9wZ1
aB5cD6eF8gH0iJ2kL3mAAAAFHdyZW5AYmlsZ2UtcHVtcC1ib3gBAgMEBQYH
-----END OPENSSH PRIVATE KEY-----
KEY
chmod 600 "$HOME/.ssh/pump_deploy"
exec bilge-pump pump --queue /var/lib/jobs/jobs.json
