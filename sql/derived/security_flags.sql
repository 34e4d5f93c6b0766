-- title: Events a security control flags
-- description: Every event matching a CIS AWS Foundations monitoring control (one boolean column per control, named after its v1.4-v5.0 number; v1.2 numbers them 3.x and v6.0 5.x) or a per-event extra: a security group opened to the world, a successful console sign-in without MFA, a failed console sign-in (errorMessage, or responseElements.ConsoleLogin = Failure), GuardDuty/Config/flow logs disabled, access keys or login profiles made for another user. Only rows matching at least one are kept. Materialized per data file when the lake is written, so the daily security report reads these few rows instead of the day's request parameters and event IDs.
-- parameters: none
WITH flagged AS (
    SELECT
        event_date, account, region, eventid, eventtime, eventsource, eventname, eventtype,
        nullif(errorcode, '') AS errorcode,
        errormessage, sourceipaddress, useragent,
        principal,
        coalesce(useridentity.type, 'Unknown') AS principal_type,
        useridentity.username AS user_name,
        useridentity.principalid AS principal_id,
        CASE WHEN eventname = 'ConsoleLogin' THEN json_extract_scalar(additionaleventdata, '$.MFAUsed') END AS mfa_used,
        CASE WHEN eventname = 'ConsoleLogin' THEN json_extract_scalar(responseelements, '$.ConsoleLogin') END
            AS login_result,
        CASE WHEN eventsource IN ('ec2.amazonaws.com', 'iam.amazonaws.com', 'guardduty.amazonaws.com',
                                  's3.amazonaws.com')
            AND eventname IN ('AuthorizeSecurityGroupIngress', 'ModifySecurityGroupRules', 'CreateAccessKey',
                              'CreateLoginProfile', 'UpdateLoginProfile', 'UpdateDetector', 'PutBucketPolicy',
                              'DeleteBucketPolicy', 'PutBucketAcl')
            THEN requestparameters END AS requestparameters,
        -- 4.1 as intended: the published filter ORs the two exclusions in, which matches nearly every event.
        (errorcode LIKE '%UnauthorizedOperation' OR errorcode LIKE 'AccessDenied%')
            AND coalesce(sourceipaddress, '') <> 'delivery.logs.amazonaws.com'
            AND eventname <> 'HeadBucket' AS cis_4_1,
        eventname = 'ConsoleLogin'
            AND coalesce(json_extract_scalar(additionaleventdata, '$.MFAUsed'), '') <> 'Yes' AS cis_4_2,
        useridentity.type = 'Root' AND useridentity.invokedby IS NULL
            AND coalesce(eventtype, '') <> 'AwsServiceEvent' AS cis_4_3,
        eventsource = 'iam.amazonaws.com' AND eventname IN (
            'DeleteGroupPolicy', 'DeleteRolePolicy', 'DeleteUserPolicy', 'PutGroupPolicy', 'PutRolePolicy',
            'PutUserPolicy', 'CreatePolicy', 'DeletePolicy', 'CreatePolicyVersion', 'DeletePolicyVersion',
            'AttachRolePolicy', 'DetachRolePolicy', 'AttachUserPolicy', 'DetachUserPolicy', 'AttachGroupPolicy',
            'DetachGroupPolicy') AS cis_4_4,
        eventsource = 'cloudtrail.amazonaws.com'
            AND eventname IN ('CreateTrail', 'UpdateTrail', 'DeleteTrail', 'StartLogging', 'StopLogging') AS cis_4_5,
        eventname = 'ConsoleLogin' AND errormessage = 'Failed authentication' AS cis_4_6,
        eventsource = 'kms.amazonaws.com' AND eventname IN ('DisableKey', 'ScheduleKeyDeletion') AS cis_4_7,
        eventsource = 's3.amazonaws.com' AND eventname IN (
            'PutBucketAcl', 'PutBucketPolicy', 'PutBucketCors', 'PutBucketLifecycle', 'PutBucketReplication',
            'DeleteBucketPolicy', 'DeleteBucketCors', 'DeleteBucketLifecycle', 'DeleteBucketReplication') AS cis_4_8,
        eventsource = 'config.amazonaws.com' AND eventname IN (
            'StopConfigurationRecorder', 'DeleteDeliveryChannel', 'PutDeliveryChannel', 'PutConfigurationRecorder')
            AS cis_4_9,
        eventsource = 'ec2.amazonaws.com' AND eventname IN (
            'AuthorizeSecurityGroupIngress', 'AuthorizeSecurityGroupEgress', 'RevokeSecurityGroupIngress',
            'RevokeSecurityGroupEgress', 'CreateSecurityGroup', 'DeleteSecurityGroup', 'ModifySecurityGroupRules')
            AS cis_4_10,
        eventsource = 'ec2.amazonaws.com' AND eventname IN (
            'CreateNetworkAcl', 'CreateNetworkAclEntry', 'DeleteNetworkAcl', 'DeleteNetworkAclEntry',
            'ReplaceNetworkAclEntry', 'ReplaceNetworkAclAssociation') AS cis_4_11,
        eventsource = 'ec2.amazonaws.com' AND eventname IN (
            'CreateCustomerGateway', 'DeleteCustomerGateway', 'AttachInternetGateway', 'CreateInternetGateway',
            'DeleteInternetGateway', 'DetachInternetGateway') AS cis_4_12,
        eventsource = 'ec2.amazonaws.com' AND eventname IN (
            'CreateRoute', 'CreateRouteTable', 'ReplaceRoute', 'ReplaceRouteTableAssociation', 'DeleteRouteTable',
            'DeleteRoute', 'DisassociateRouteTable') AS cis_4_13,
        eventsource = 'ec2.amazonaws.com' AND eventname IN (
            'CreateVpc', 'DeleteVpc', 'ModifyVpcAttribute', 'AcceptVpcPeeringConnection', 'CreateVpcPeeringConnection',
            'DeleteVpcPeeringConnection', 'RejectVpcPeeringConnection', 'AttachClassicLinkVpc',
            'DetachClassicLinkVpc', 'DisableVpcClassicLink', 'EnableVpcClassicLink') AS cis_4_14,
        eventsource = 'organizations.amazonaws.com' AND eventname IN (
            'AcceptHandshake', 'AttachPolicy', 'CreateAccount', 'CreateOrganizationalUnit', 'CreatePolicy',
            'DeclineHandshake', 'DeleteOrganization', 'DeleteOrganizationalUnit', 'DeletePolicy', 'DetachPolicy',
            'DisablePolicyType', 'EnablePolicyType', 'InviteAccountToOrganization', 'LeaveOrganization',
            'MoveAccount', 'RemoveAccountFromOrganization', 'UpdatePolicy', 'UpdateOrganizationalUnit')
            AS cis_4_15,
        -- CASE guards the request parameters: only the few calls it can apply to have theirs searched.
        CASE WHEN eventsource = 'ec2.amazonaws.com'
                AND eventname IN ('AuthorizeSecurityGroupIngress', 'ModifySecurityGroupRules')
                AND coalesce(errorcode, '') = ''
            THEN requestparameters LIKE '%"0.0.0.0/0"%' OR requestparameters LIKE '%"::/0"%'
            ELSE false
        END AS world_open_security_group,
        -- A failure is not always written with an errorMessage: responseElements.ConsoleLogin says Failure then.
        eventname = 'ConsoleLogin' AND useridentity.type IN ('IAMUser', 'Root')
            AND coalesce(errorcode, '') = '' AND coalesce(errormessage, '') = ''
            AND coalesce(json_extract_scalar(additionaleventdata, '$.MFAUsed'), '') <> 'Yes'
            AND CASE WHEN eventname = 'ConsoleLogin'
                THEN coalesce(json_extract_scalar(responseelements, '$.ConsoleLogin'), '') <> 'Failure' ELSE false END
            AS console_login_without_mfa,
        eventname = 'ConsoleLogin' AND (
            failed
            OR CASE WHEN eventname = 'ConsoleLogin'
                THEN json_extract_scalar(responseelements, '$.ConsoleLogin') = 'Failure' ELSE false END
        ) AS console_login_failed,
        coalesce(errorcode, '') = '' AND (
            (eventsource = 'guardduty.amazonaws.com' AND (
                eventname IN ('DeleteDetector', 'DisassociateFromMasterAccount', 'DisassociateFromAdministratorAccount',
                              'StopMonitoringMembers')
                OR CASE WHEN eventname = 'UpdateDetector'
                    THEN json_extract_scalar(requestparameters, '$.enable') = 'false' ELSE false END))
            OR (eventsource = 'config.amazonaws.com'
                AND eventname IN ('StopConfigurationRecorder', 'DeleteConfigurationRecorder', 'DeleteDeliveryChannel'))
            OR (eventsource = 'ec2.amazonaws.com' AND eventname = 'DeleteFlowLogs')
        ) AS monitoring_disabled,
        CASE WHEN eventsource = 'iam.amazonaws.com'
                AND eventname IN ('CreateAccessKey', 'CreateLoginProfile', 'UpdateLoginProfile')
                AND coalesce(errorcode, '') = ''
            THEN json_extract_scalar(requestparameters, '$.userName') IS NOT NULL
                AND (coalesce(useridentity.type, '') <> 'IAMUser'
                     OR json_extract_scalar(requestparameters, '$.userName') <> coalesce(useridentity.username, ''))
            ELSE false
        END AS credentials_for_another_user
    FROM cloudtrail_calls
)
SELECT *
FROM flagged
WHERE cis_4_1 OR cis_4_2 OR cis_4_3 OR cis_4_4 OR cis_4_5 OR cis_4_6 OR cis_4_7 OR cis_4_8 OR cis_4_9 OR cis_4_10
    OR cis_4_11 OR cis_4_12 OR cis_4_13 OR cis_4_14 OR cis_4_15 OR world_open_security_group
    OR console_login_without_mfa OR console_login_failed OR monitoring_disabled OR credentials_for_another_user
ORDER BY eventtime, eventid, eventsource, eventname
