//! Unit tests of `Router::run`: retries, fallbacks, cooldowns, order.

use super::*;
use crate::deployment::test_deployment;
use crate::providers::Wire;
use std::sync::atomic::{AtomicU32, Ordering};

fn router(settings: RouterSettings, deps: Vec<(&str, &str, Option<u32>)>) -> Router {
    let states = deps
        .into_iter()
        .map(|(id, group, order)| {
            let mut d = test_deployment(id, group, Wire::OpenAi);
            d.order = order;
            DeploymentState::new(d, None)
        })
        .collect();
    Router::new(settings, states)
}

fn err(class: ErrorClass, status: u16) -> ProviderError {
    ProviderError::new(class, status, "openai", "boom".into())
}

fn req(model: &str) -> RouteRequest {
    RouteRequest {
        model: model.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_retry_goes_to_another_deployment_of_the_group() {
    let r = router(
        RouterSettings {
            num_retries: 1,
            ..Default::default()
        },
        vec![("a", "g", None), ("b", "g", None)],
    );
    let calls = parking_lot::Mutex::new(Vec::new());
    let out = r
        .run(&req("g"), |d| {
            calls.lock().push(d.dep.id.clone());
            let first = calls.lock().len() == 1;
            async move {
                if first {
                    Err(err(ErrorClass::InternalServer, 500))
                } else {
                    Ok(d.dep.id.clone())
                }
            }
        })
        .await
        .unwrap();
    let calls = calls.lock().clone();
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0], calls[1]);
    assert_eq!(out.value, calls[1]);
    assert_eq!(out.attempted_retries, 1);
}

#[tokio::test]
async fn non_retryable_errors_are_not_retried_and_fallbacks_are_tried_in_order() {
    let settings = RouterSettings {
        num_retries: 3,
        fallbacks: vec![("g".into(), vec!["h".into(), "k".into()])],
        ..Default::default()
    };
    let r = router(
        settings,
        vec![("a", "g", None), ("b", "h", None), ("c", "k", None)],
    );
    let n = AtomicU32::new(0);
    let out = r
        .run(&req("g"), |d| {
            n.fetch_add(1, Ordering::SeqCst);
            async move {
                match d.dep.model_name.as_str() {
                    "g" => Err(err(ErrorClass::Authentication, 401)),
                    "h" => Err(err(ErrorClass::BadRequest, 400)),
                    _ => Ok(()),
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 3);
    assert_eq!(out.deployment.dep.id, "c");
    assert_eq!(out.attempted_fallbacks, 2);
}

#[tokio::test]
async fn context_window_errors_use_context_window_fallbacks_not_default_ones() {
    let settings = RouterSettings {
        num_retries: 0,
        context_window_fallbacks: vec![("g".into(), vec!["big".into()])],
        default_fallbacks: vec!["other".into()],
        ..Default::default()
    };
    let r = router(
        settings,
        vec![("a", "g", None), ("b", "big", None), ("c", "other", None)],
    );
    let out = r
        .run(&req("g"), |d| async move {
            if d.dep.model_name == "g" {
                Err(err(ErrorClass::ContextWindowExceeded, 400))
            } else {
                Ok(d.dep.model_name.clone())
            }
        })
        .await
        .unwrap();
    assert_eq!(out.value, "big");
}

#[tokio::test]
async fn a_deployment_in_cooldown_is_skipped_and_lower_order_is_preferred() {
    let settings = RouterSettings {
        num_retries: 0,
        allowed_fails: 0,
        ..Default::default()
    };
    let r = router(
        settings,
        vec![("primary", "g", Some(1)), ("backup", "g", Some(2))],
    );
    // Order 1 is used while healthy.
    let out = r
        .run(&req("g"), |d| async move {
            Ok::<_, ProviderError>(d.dep.id.clone())
        })
        .await
        .unwrap();
    assert_eq!(out.value, "primary");
    // One failure with allowed_fails 0 cools it down...
    let _ = r
        .run(&req("g"), |_| async {
            Err::<(), _>(err(ErrorClass::InternalServer, 500))
        })
        .await;
    // ...so the next request goes to order 2.
    let out = r
        .run(&req("g"), |d| async move {
            Ok::<_, ProviderError>(d.dep.id.clone())
        })
        .await
        .unwrap();
    assert_eq!(out.value, "backup");
}

#[tokio::test]
async fn a_fully_cooled_group_without_fallbacks_reports_no_deployment_with_retry_after() {
    let settings = RouterSettings {
        num_retries: 0,
        allowed_fails: 0,
        ..Default::default()
    };
    let r = router(settings, vec![("a", "g", None)]);
    let _ = r
        .run(&req("g"), |_| async {
            Err::<(), _>(err(ErrorClass::RateLimit, 429))
        })
        .await;
    match r
        .run(&req("g"), |_| async { Ok::<_, ProviderError>(()) })
        .await
    {
        Err(RouteError::NoDeployment { retry_after, .. }) => assert!(retry_after.is_some()),
        other => panic!("expected NoDeployment, got {other:?}"),
    }
}

#[tokio::test]
async fn mock_testing_fallbacks_fails_the_first_group_on_purpose() {
    let settings = RouterSettings {
        fallbacks: vec![("g".into(), vec!["h".into()])],
        ..Default::default()
    };
    let r = router(settings, vec![("a", "g", None), ("b", "h", None)]);
    let rq = RouteRequest {
        mock_testing_fallbacks: true,
        ..req("g")
    };
    let out = r
        .run(
            &rq,
            |d| async move { Ok::<_, ProviderError>(d.dep.id.clone()) },
        )
        .await
        .unwrap();
    assert_eq!(out.value, "b");
    assert_eq!(out.attempted_fallbacks, 1);
}

#[tokio::test]
async fn unknown_models_list_the_available_groups() {
    let r = router(RouterSettings::default(), vec![("a", "g", None)]);
    match r
        .run(&req("nope"), |_| async { Ok::<_, ProviderError>(()) })
        .await
    {
        Err(RouteError::UnknownModel { available, .. }) => assert_eq!(available, "g"),
        other => panic!("{other:?}"),
    }
}
