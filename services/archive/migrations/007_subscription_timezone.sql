-- 007_subscription_timezone.sql - the time zone a subscriber reads the times of its summaries
-- in (domain.md §7: PKT for Pakistani recipients, CST for recipients in China).  Only the two
-- fixed-offset zones of the platform are allowed (neither has daylight saving time).  NULL
-- means "by the first preferred language": zh-Hans -> Asia/Shanghai, else Asia/Karachi; the
-- API always stores the resolved value, rows written by other means may leave it NULL.
ALTER TABLE subscriptions
    ADD COLUMN timezone text
        CHECK (timezone IS NULL OR timezone IN ('Asia/Karachi', 'Asia/Shanghai'));
UPDATE subscriptions
   SET timezone = CASE WHEN languages[1] = 'zh-Hans' THEN 'Asia/Shanghai' ELSE 'Asia/Karachi' END;
