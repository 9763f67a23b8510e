"""A query parameter a route does not take is refused, so a typo never widens a filter."""

from __future__ import annotations

from api.conftest import Api


async def test_a_mistyped_filter_is_refused_with_the_parameters_the_route_takes(
    offline_api: Api,
) -> None:
    answer = await offline_api.get("/api/alerts?stat=open", "maria")
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["loc"] == ["query", "stat"]
    assert "this route takes: " in error["msg"] and "state" in error["msg"]
    assert (await offline_api.get("/api/alerts?state=open", "maria")).status_code == 200


async def test_an_unknown_parameter_is_refused_after_the_caller_is_known(
    offline_api: Api,
) -> None:
    anonymous = await offline_api.http.get("/api/unheard?whatever=1")
    assert anonymous.status_code == 401
