"""Prepares a moto server started with INITIAL_NO_AUTH_ACTION_COUNT for the wrong-credentials
test: an IAM user allowed everything, its access key and a bucket, made while requests are
still unauthenticated. Then it checks that the server enforces signatures (a wrong secret is
refused and the right one accepted) and prints `KEY_ID SECRET`.

    python s3_auth_setup.py ENDPOINT BUCKET
"""

import json
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

endpoint, bucket = sys.argv[1], sys.argv[2]
config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})


def client(service, key="setup", secret="setup"):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=config,
    )


iam = client("iam")
iam.create_user(UserName="targeting")
key = iam.create_access_key(UserName="targeting")["AccessKey"]
iam.put_user_policy(
    UserName="targeting",
    PolicyName="everything",
    PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    ),
)
client("s3").create_bucket(Bucket=bucket)

# Use up any unauthenticated requests left, until the server checks signatures.
wrong = client("s3", key["AccessKeyId"], "not-the-secret")
for _ in range(20):
    try:
        wrong.list_objects_v2(Bucket=bucket)
    except botocore.exceptions.ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] == 403:
            break
else:
    sys.exit("the server does not check signatures")
right = client("s3", key["AccessKeyId"], key["SecretAccessKey"])
right.list_objects_v2(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
