"""The execution host: the one machine whose static IP every exchange key is bound to."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from host_boot import HostBootArgs, boot_user_data

AL2023_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
SSM_MANAGED_INSTANCE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
ANYWHERE_V4 = "0.0.0.0/0"


@dataclass(frozen=True)
class ExecutionHostArgs:
    region: str
    secret_arns: pulumi.Input[dict[str, str]]
    kms_key_arn: pulumi.Input[str]
    log_group_arn: pulumi.Input[str]
    # The release objects (wheel, requirements, opa) the host reads once, at boot.
    release_object_arns: pulumi.Input[list[str]]
    boot: HostBootArgs
    instance_type: str = "t3.small"
    ami_id: str | None = None
    # None: no SSH at all (reach the host through SSM Session Manager).
    admin_cidr: str | None = None
    vpc_cidr: str = "10.20.0.0/16"
    subnet_id: str | None = None
    vpc_id: str | None = None


class ExecutionHost(pulumi.ComponentResource):
    role: aws.iam.Role
    instance: aws.ec2.Instance
    static_ip: aws.ec2.Eip
    static_ip_association: aws.ec2.EipAssociation
    security_group: aws.ec2.SecurityGroup

    def __init__(self, name: str, args: ExecutionHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("keyguard:infra:ExecutionHost", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        vpc_id, subnet_id = self._network(name, args, child)
        self.security_group = self._security_group(name, args, vpc_id, child)
        self.role, profile = self._role(name, args, child)

        ami = args.ami_id or aws.ssm.get_parameter_output(name=AL2023_AMI_PARAMETER, opts=pulumi.InvokeOptions(
            parent=self)).value
        # Allocated before the instance and associated after it: the boot script names the address (the keys
        # inventory binds every key to it), and replacing the instance keeps it.
        self.static_ip = aws.ec2.Eip(
            f"{name}-eip",
            domain="vpc",
            tags={"Name": f"{name}-static-ip", "keyguard:role": "exchange-egress"},
            opts=child,
        )
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami,
            instance_type=args.instance_type,
            subnet_id=subnet_id,
            vpc_security_group_ids=[self.security_group.id],
            iam_instance_profile=profile.name,
            # The EIP is the public address; no second, ephemeral one.
            associate_public_ip_address=False,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                # A hop limit of 1 keeps containers on the host from reaching the role credentials.
                http_put_response_hop_limit=1,
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                encrypted=True, volume_type="gp3", volume_size=20, delete_on_termination=True,
            ),
            user_data=boot_user_data(args.boot, name, self.static_ip.public_ip),
            user_data_replace_on_change=True,
            tags={"Name": f"{name}", "keyguard:role": "execution-host"},
            opts=child,
        )
        self.static_ip_association = aws.ec2.EipAssociation(
            f"{name}-eip-association", allocation_id=self.static_ip.allocation_id, instance_id=self.instance.id,
            opts=child,
        )
        self.register_outputs({
            "instanceId": self.instance.id,
            "staticIp": self.static_ip.public_ip,
            "roleArn": self.role.arn,
            "securityGroupId": self.security_group.id,
        })

    def _network(self, name: str, args: ExecutionHostArgs,
                 child: pulumi.ResourceOptions) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
        if args.subnet_id and args.vpc_id:
            return args.vpc_id, args.subnet_id
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.vpc_cidr, enable_dns_hostnames=True,
                          enable_dns_support=True, tags={"Name": f"{name}-vpc"}, opts=child)
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)
        subnet = aws.ec2.Subnet(
            f"{name}-public",
            vpc_id=vpc.id,
            cidr_block=_first_subnet(args.vpc_cidr),
            map_public_ip_on_launch=False,
            tags={"Name": f"{name}-public"},
            opts=child,
        )
        routes = aws.ec2.RouteTable(
            f"{name}-routes",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE_V4, gateway_id=gateway.id)],
            opts=child,
        )
        aws.ec2.RouteTableAssociation(f"{name}-public-routes", subnet_id=subnet.id, route_table_id=routes.id,
                                      opts=child)
        return vpc.id, subnet.id

    def _security_group(self, name: str, args: ExecutionHostArgs, vpc_id: pulumi.Input[str],
                        child: pulumi.ResourceOptions) -> aws.ec2.SecurityGroup:
        # No inline rules: every rule is its own resource, so adding one never silently replaces the others.
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="Keyguard execution host: no ingress but admin SSH; egress HTTPS and NTP only",
            vpc_id=vpc_id,
            opts=child,
        )
        if args.admin_cidr:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-ssh-admin", security_group_id=group.id, description="SSH from the one admin address",
                ip_protocol="tcp", from_port=22, to_port=22, cidr_ipv4=args.admin_cidr, opts=child,
            )
        # Exchanges, Secrets Manager, SSM and CloudWatch are all HTTPS; time sync matters for signed requests.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-https-out", security_group_id=group.id, description="HTTPS to exchanges and AWS APIs",
            ip_protocol="tcp", from_port=443, to_port=443, cidr_ipv4=ANYWHERE_V4, opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-ntp-out", security_group_id=group.id, description="NTP, exchange signatures need a true clock",
            ip_protocol="udp", from_port=123, to_port=123, cidr_ipv4=ANYWHERE_V4, opts=child,
        )
        return group

    def _role(self, name: str, args: ExecutionHostArgs,
              child: pulumi.ResourceOptions) -> tuple[aws.iam.Role, aws.iam.InstanceProfile]:
        role = aws.iam.Role(
            f"{name}-role",
            description="Keyguard execution host: reads its release and vault secrets, writes its logs, SSM access",
            assume_role_policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                               "Action": "sts:AssumeRole"}],
            }),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-least-privilege",
            role=role.id,
            policy=pulumi.Output.all(
                secrets=args.secret_arns, key=args.kms_key_arn, logs=args.log_group_arn,
                release=args.release_object_arns,
            ).apply(lambda v: json.dumps(host_policy(args.region, v["secrets"], v["key"], v["logs"], v["release"]))),
            opts=child,
        )
        aws.iam.RolePolicyAttachment(f"{name}-ssm", role=role.name, policy_arn=SSM_MANAGED_INSTANCE_POLICY,
                                     opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)
        return role, profile


def host_policy(region: str, secret_arns: dict[str, str], kms_key_arn: str, log_group_arn: str,
                release_object_arns: list[str]) -> dict:
    """The host role's whole identity policy: exact actions on exact ARNs, nothing else."""
    log_group = log_group_arn.removesuffix(":*")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadVaultSecrets",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": sorted(secret_arns.values()),
            },
            {
                "Sid": "DecryptOnlyThroughSecretsManager",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": kms_key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
            },
            {
                "Sid": "WriteHostLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group}:log-stream:*",
            },
            {
                "Sid": "ReadRelease",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": sorted(release_object_arns),
            },
        ],
    }


def _first_subnet(vpc_cidr: str) -> str:
    network = ipaddress.ip_network(vpc_cidr)
    return str(next(network.subnets(new_prefix=min(network.prefixlen + 4, 28))))
